"""volatility.v1.Predictor: Predict and ModelInfo."""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict

import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp

from compiled_models.runtime import CompiledModel, InvalidInput
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from server import codec
from server.config import Settings
from server.errors import DeadlineExceeded, InvalidArgument
from server.metrics import ServerMetrics
from server.registry import ModelRegistry
from server.rpc import CallInfo, rpc


def score(model: CompiledModel, x: np.ndarray, context) -> np.ndarray:
    """The native call releases the GIL, so handler threads score in parallel."""
    try:
        probs = model.predict(x)
    except InvalidInput as exc:
        raise InvalidArgument(str(exc)) from None
    remaining = context.time_remaining()
    if remaining is not None and remaining <= 0:
        raise DeadlineExceeded(f"deadline exceeded while scoring {len(x)} rows")
    return probs


def record_predictions(metrics: ServerMetrics, model: CompiledModel, probs: np.ndarray) -> None:
    metrics.predictions.labels(model.name).inc(len(probs))
    metrics.positives.labels(model.name).inc(int((probs >= model.threshold).sum()))
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
        model = self.registry.get(request.model)
        call.artifact = model.name
        t0 = time.perf_counter()
        with self.child_span(call, "decode"):
            x = codec.decode_predict(request, model.manifest.feature_names, self.settings.max_rows)
        call.rows = len(x)
        with self.child_span(
            call, "predict", {"volspike.rows": len(x), "volspike.artifact": model.name}
        ):
            probs = score(model, x, context)
        with self.child_span(call, "encode"):
            response = codec.encode_predict(
                probs, model.threshold, model.name, model.sha256, time.perf_counter() - t0
            )
        record_predictions(self.metrics, model, probs)
        return response

    @rpc("/volatility.v1.Predictor/ModelInfo")
    def ModelInfo(self, request, context, call: CallInfo):
        model = self.registry.get(request.model)
        call.artifact = model.name
        loaded = Timestamp()
        loaded.FromNanoseconds(int(self.registry.loaded_at.get(model.name, 0.0) * 1e9))
        m = model.manifest
        active = self.registry.active
        return pb.ModelInfoResponse(
            artifact=model.name,
            artifact_sha256=model.sha256,
            feature_names=list(m.feature_names),
            decision_threshold=m.decision_threshold,
            description=m.description,
            created=m.created,
            loaded_at=loaded,
            active=active is not None and active.name == model.name,
            available_artifacts=self.registry.available(),
            manifest_json=json.dumps(asdict(m), sort_keys=True),
        )
