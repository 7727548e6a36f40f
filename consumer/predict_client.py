"""The Predict client: one call per batch (traced, with a deadline), its answer checked
(one probability in [0, 1] and one consistent label per row, an artifact's name), retried
with backoff while the server is unavailable and asked again when malformed; a batch the
server refuses, or keeps answering wrongly, becomes dead letters."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import grpc
import numpy as np
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from compiled_models.manifest import ARTIFACT_NAME
from consumer.batcher import Batch, Row
from consumer.config import ConsumerSettings
from consumer.metrics import ConsumerMetrics
from consumer.outputs import Outputs
from market.features import N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from telemetry import names_gen as contract

logger = logging.getLogger("consumer.pipeline")  # one name for the consumer's log lines
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


class PredictClient:
    def __init__(
        self,
        settings: ConsumerSettings,
        stub: pb_grpc.PredictorStub,
        metrics: ConsumerMetrics,
        tracer: trace.Tracer,
        outputs: Outputs,
        paused: Callable[[], AbstractContextManager[None]],
        sleep: Callable[[float], None],
        aborting: Callable[[], bool],
    ) -> None:
        """``paused``: consumption paused meanwhile (group membership kept); ``sleep``:
        waits while the loop's housekeeping goes on; ``aborting``: stop retrying."""
        self.s, self.stub, self.metrics, self.tracer = settings, stub, metrics, tracer
        self.outputs, self.paused, self.sleep, self.aborting = outputs, paused, sleep, aborting

    def submit(
        self,
        x: np.ndarray,
        meta: list[Row],
        warming: list[Row],
        order: bytes,
        backfill: set[tuple[int, int]],
    ) -> Batch:
        """The batch's Predict call, on its way (not waited for)."""
        req = pb.PredictRequest(
            packed=pb.PackedRows(float32_le=x.tobytes(), num_features=N_FEATURES)
        )
        span = self.tracer.start_span("consumer.batch", attributes={"volspike.rows": len(x)})
        ctx = trace.set_span_in_context(span)
        call_span = self.tracer.start_span(
            "/volatility.v1.Predictor/Predict",
            context=ctx,
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc"},
        )
        carrier: dict[str, str] = {}
        inject(carrier, context=trace.set_span_in_context(call_span))
        md = tuple(carrier.items())
        fut = self.stub.Predict.future(req, timeout=self.s.deadline_s, metadata=md)
        self.metrics.batch_rows.observe(len(x))
        return Batch(
            meta, req, fut, time.monotonic(), span, call_span, md, warming, order, backfill
        )

    def answer(self, b: Batch) -> pb.PredictResponse | None:
        """The batch's answer (waited for), retried while the server is unavailable and
        asked again when malformed; None when its ticks were dead-lettered instead."""
        if b.future is None:  # nothing scored
            return pb.PredictResponse()
        try:
            try:
                resp = b.future.result()
                self.metrics.predict_calls.labels("OK").inc()
            except grpc.RpcError as err:
                self.metrics.predict_calls.labels(err.code().name).inc()
                if err.code() not in RETRYABLE:
                    raise
                resp = self._retry(b, err.code())
            for _ in range(self.s.answer_retries):
                problem = answer_problem(b, resp)
                if problem is None:
                    return resp
                self.metrics.errors.labels("bad_answer").inc()
                logger.warning("malformed answer (%s); asking again", problem)
                resp = self._retry(b, None)
        except grpc.RpcError as err:  # final, or a retry answered with a final error
            self._rejected(b, err)
            return None
        problem = answer_problem(b, resp)
        if problem is None:
            return resp
        reason = f"malformed answer from the server: {problem}"
        self.outputs.dead_letter_batch(b, reason, contract.REASON_BAD_ANSWER)
        return None

    def _rejected(self, b: Batch, err: grpc.RpcError) -> None:
        """The server refused the batch for good: every scored tick is a dead letter."""
        code = err.code()
        b.call_span.set_status(Status(StatusCode.ERROR, str(code)))
        reason = f"Predict rejected the batch: {code.name}: {err.details()}"
        self.outputs.dead_letter_batch(b, reason, contract.REASON_PREDICT_REJECTED)

    def _retry(self, b: Batch, code: grpc.StatusCode | None) -> pb.PredictResponse:
        """Retry with capped exponential backoff and jitter; consumption is paused
        meanwhile so nothing piles up and nothing is dropped. ``code`` None: the last
        answer was malformed (counted as retries{code="BAD_ANSWER"})."""
        delay = 0.05
        with self.paused():
            while not self.aborting():
                why = code.name if code is not None else "BAD_ANSWER"
                self.metrics.retries.labels(why).inc()
                logger.warning("Predict %s; retrying %d rows in %.2f s", why, len(b.meta), delay)
                self.sleep(delay * (0.5 + random.random() / 2))
                delay = min(delay * 2, self.s.retry_max_backoff_s)
                try:
                    resp: pb.PredictResponse = self.stub.Predict(
                        b.request, timeout=self.s.deadline_s, metadata=b.metadata
                    )
                    self.metrics.predict_calls.labels("OK").inc()
                    return resp
                except grpc.RpcError as err:
                    code = err.code()
                    self.metrics.predict_calls.labels(code.name).inc()
                    if code not in RETRYABLE:
                        raise
            raise RuntimeError("aborted while retrying Predict")


def answer_problem(b: Batch, resp: pb.PredictResponse | None) -> str | None:
    """What is wrong with an answer (None: nothing): one probability in [0, 1] and one
    label per row, and a name of the artifact that scored them."""
    if resp is None:
        return "no answer"
    rows, n_p, n_l = len(b.meta), len(resp.probabilities), len(resp.labels)
    if n_p != rows or n_l != rows:
        return f"{n_p} probabilities and {n_l} labels for {rows} rows"
    probs = np.asarray(resp.probabilities, np.float32)
    inside = (probs >= 0.0) & (probs <= 1.0)  # NaN is outside too
    if not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        return f"probability {float(probs[i])!r} of row {i} is not in [0, 1]"
    if ARTIFACT_NAME.fullmatch(resp.artifact) is None:  # the manifest schema's kind
        return f"artifact name {resp.artifact[:64]!r} is not an artifact's name"
    labels = np.asarray(resp.labels, bool)
    flagged = probs >= np.float32(resp.decision_threshold)  # as both servers compare
    if not np.array_equal(labels, flagged):
        i = int(np.flatnonzero(labels != flagged)[0])
        return (
            f"label {bool(labels[i])} of row {i} contradicts probability "
            f"{float(probs[i])!r} against threshold {resp.decision_threshold!r}"
        )
    return None
