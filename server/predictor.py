"""volatility.v1.Predictor: Predict and ModelInfo."""

from __future__ import annotations

import contextlib
import time

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from compiled_models.runtime import CompiledModel
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from server import codec
from server import contract_gen as contract
from server.config import Settings
from server.metrics import ServerMetrics
from server.registry import ModelRegistry
from server.rpc import CallInfo, rpc

STOP_CHECK_ROWS = contract.STOP_CHECK_ROWS
"""Rows scored between checks of the call's deadline and cancellation (~6 ms of trees),
so an expired or abandoned call stops costing a core."""


def score(
    model: CompiledModel, x: np.ndarray, context, metrics: ServerMetrics, call: CallInfo
) -> np.ndarray:
    """The native call releases the GIL, so handler threads score in parallel."""
    metrics.scoring.inc(len(x))
    try:
        if len(x) <= STOP_CHECK_ROWS:
            probs = model.predict(x)
        else:
            probs = np.empty(len(x), np.float32)
            for lo in range(0, len(x), STOP_CHECK_ROWS):
                if lo:
                    _raise_if_ended(context, call, len(x))
                probs[lo : lo + STOP_CHECK_ROWS] = model.predict(x[lo : lo + STOP_CHECK_ROWS])
    finally:  # the codec rejects infinities first: the model's own check is a backstop
        metrics.scoring.dec(len(x))
    _raise_if_ended(context, call, len(x), cancelled=False)  # a whole answer: only a deadline
    return probs


def _raise_if_ended(context, call: CallInfo, rows: int, cancelled: bool = True) -> None:
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        if call.short_deadline:  # the client gave less than the latency the service promises
            raise contract.client_deadline_scoring(
                rows=rows, floor_ms=contract.CLIENT_DEADLINE_FLOOR_MS
            )
        raise contract.deadline_scoring(rows=rows)
    if cancelled and not context.is_active():
        raise contract.cancelled_scoring(rows=rows)


def record_predictions(
    metrics: ServerMetrics, model: CompiledModel, probs: np.ndarray, threshold: float
) -> None:
    metrics.predictions.labels(model.name).inc(len(probs))
    metrics.positives.labels(model.name).inc(int((probs >= threshold).sum()))
    metrics.probability.observe_batch(probs, model.name)


class Service:
    """What every servicer needs; the ``rpc`` wrapper reads ``metrics`` and ``tracer``."""

    def __init__(
        self, registry: ModelRegistry, metrics: ServerMetrics, tracer, settings: Settings
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.tracer = tracer
        self.settings = settings

    def child_span(self, call: CallInfo, name: str, attributes: dict | None = None):
        """A child of the call's span, only when the call is sampled: three unrecorded
        spans per call cost more than the tree evaluation."""
        if not call.span.is_recording():
            return contextlib.nullcontext()
        return self.tracer.start_as_current_span(name, attributes=attributes)


class PredictorService(Service, pb_grpc.PredictorServicer):
    @rpc("/volatility.v1.Predictor/Predict")
    def Predict(self, request, context, call: CallInfo):
        model = self.registry.resolve(request.model)
        threshold = model.threshold  # read once: a config reload may change it mid-call
        call.artifact = model.name
        t0 = time.perf_counter()
        with self.child_span(call, "decode"):
            x = codec.decode_predict(request, model.manifest.feature_names, self.settings.max_rows)
        call.rows = len(x)
        if request.HasField("packed"):  # named rows were checked while decoding
            codec.reject_infinite(x, "packed.float32_le")
        with self.child_span(
            call, "predict", {"volspike.rows": len(x), "volspike.artifact": model.name}
        ):
            probs = score(model, x, context, self.metrics, call)
        with self.child_span(call, "encode"):
            response = codec.encode_predict(
                probs, threshold, model.name, model.sha256, time.perf_counter() - t0
            )
        record_predictions(self.metrics, model, probs, threshold)
        return response

    @rpc("/volatility.v1.Predictor/ModelInfo")
    def ModelInfo(self, request, context, call: CallInfo):
        model_name = self.registry.model_name
        model = self.registry.resolve(request.model, "", model_name)
        call.artifact = model.name
        loaded = Timestamp()
        loaded.FromNanoseconds(int(self.registry.loaded_at.get(model.name, 0.0) * 1e9))
        m = model.manifest
        active = self.registry.active
        return pb.ModelInfoResponse(
            artifact=model.name,
            artifact_sha256=model.sha256,
            feature_names=list(m.feature_names),
            decision_threshold=model.threshold,  # the config's, else the manifest's
            description=m.description,
            created=m.created,
            loaded_at=loaded,
            active=active is not None and active.name == model.name,
            available_artifacts=self.registry.available(),
            manifest_json=model.manifest_json,
            calibrated=model.calibration is not None,
            trained_on=m.trained_on,
            scope=m.scope,
            model_name=model_name,
        )
