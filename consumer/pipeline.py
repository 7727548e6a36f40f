"""The consumer loop: ticks -> per-symbol features -> micro-batches -> Predict ->
predictions (or dead letters) -> commit of what Kafka acknowledged.

At-least-once: an input offset is committed only after its output (prediction or
dead-letter) was acknowledged by Kafka, and every earlier offset's too. A crash replays
from the last commit; the same tick then yields the same prediction again.

Warm-up: a symbol is scored once it has 300 s of unbroken history
(``market.features.WARMUP_MS``); until then, and again after a longer gap, each of its
ticks is answered in order with a ``warming_up`` record that carries no probability.

Feature state after an assignment (restart or rebalance): the consumer seeks back
``warmup_ms`` of event time before the committed offset (the commit's metadata carries
the event time of the last committed tick; ``offsets_for_times`` finds the offset) and
replays those ticks into the feature state without scoring them. Features look back
300 s, so 310 s of replay reproduces the state of a consumer that never stopped
whenever the symbol traded in the first 10 s of that span.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import random
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from opentelemetry import trace
from opentelemetry.propagate import inject
from opentelemetry.trace import SpanKind, Status, StatusCode

from compiled_models.manifest import ARTIFACT_NAME
from consumer.clock import SteadyWallClock
from consumer.config import ConsumerSettings
from consumer.drift import ArtifactBins, LiveSample
from consumer.messages import (
    BACKFILL_HEADER,
    BadTick,
    decode_tick,
    encode_prediction,
    encode_tick,
)
from consumer.metrics import ConsumerMetrics
from consumer.offsets import PartitionAcks
from consumer.states import SymbolStates
from market.features import FEATURE_NAMES, N_FEATURES
from market.ticks import Tick
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from telemetry import names_gen as contract

logger = logging.getLogger(__name__)
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# Delivery errors worth producing again although librdkafka does not flag them retriable
# (a broker restart, a topic still being created).
_TRANSIENT = {
    KafkaError._MSG_TIMED_OUT,
    KafkaError._TRANSPORT,
    KafkaError._ALL_BROKERS_DOWN,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.REQUEST_TIMED_OUT,
    KafkaError.NOT_ENOUGH_REPLICAS,
}


SCHEMA_RECHECK_S = 60.0
"""How long an artifact's checked feature list is trusted before ModelInfo is asked again."""
MAX_ARTIFACTS = 16
"""Artifacts whose ModelInfo and retry times are remembered at once: a server naming a new
artifact in every answer must not grow the consumer without bound."""
SWEEP_S = 10.0
"""How often symbols that can no longer be warm are dropped (consumer/states.py)."""


@dataclass
class Batch:
    meta: list[tuple[int, int, Tick]]  # (partition, offset, tick) per row
    request: pb.PredictRequest | None
    future: grpc.Future | None  # None: nothing to score (every tick is warming up)
    started: float
    span: trace.Span
    call_span: trace.Span
    metadata: tuple = field(default=())
    warming: list[tuple[int, int, Tick]] = field(default_factory=list)
    order: bytes = b""  # per tick in arrival order: 1 scored (meta), 0 warming up
    backfill: set[tuple[int, int]] = field(default_factory=set)  # (partition, offset)


class Pipeline:
    def __init__(
        self,
        settings: ConsumerSettings,
        consumer: Consumer,
        producer: Producer,
        stub: pb_grpc.PredictorStub,
        metrics: ConsumerMetrics,
        tracer: trace.Tracer,
    ) -> None:
        self.s = settings
        self.consumer = consumer
        self.producer = producer
        self.stub = stub
        self.metrics = metrics
        self.tracer = tracer
        self.states = SymbolStates(
            settings.max_symbols,
            settings.max_window_ticks,
            settings.max_future_ms,
        )
        self._next_sweep = time.monotonic() + SWEEP_S
        self._unconfirmed: dict[str, float] = {}  # artifact -> since when ModelInfo fails
        self.acks: dict[int, PartitionAcks] = {}
        self.warm_until: dict[int, int] = {}  # partition -> first offset to score
        self.clock = SteadyWallClock()  # event times are judged against it
        self.sample = LiveSample(
            Path(settings.live_sample_dir),
            settings.live_sample_rows,
            settings.live_sample_flush_s,
            f"{settings.group_id}-{socket.gethostname()}-{os.getpid()}",
            window_s=settings.live_sample_window_s,
        )
        self._drift_retry: dict[str, float] = {}
        # artifact -> (its ModelInfo, None after a failed call; when to ask again)
        self._info: dict[str, tuple[pb.ModelInfoResponse | None, float]] = {}
        # lost partition -> answered, uncommitted (offset, commit metadata)
        self.unsaved: dict[int, tuple[int, str | None]] = {}
        self.inflight: deque[Batch] = deque()
        self.backlog: list[Message] = []  # messages read while paused for retries
        self.redeliver: list[tuple] = []
        self.running = True
        self.aborting = False
        self._next_commit = 0.0
        self._next_stats = 0.0
        self._answered = 0
        self._predicted = 0  # folded into the Prometheus counter once per loop
        self._answered_at_stats = 0

    # --- loop -------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(
            [self.s.ticks_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        wait = self.s.max_wait_ms / 1000
        while self.running:
            msgs = self.backlog or self.consumer.consume(self.s.max_rows, wait)
            self.backlog = []
            if msgs:
                self._handle(msgs)
            self._complete()
            self._service()
        logger.info("stopping: finishing %d in-flight batches", len(self.inflight))
        self._drain()
        self._commit(sync=True)
        self.sample.flush()
        self.consumer.close()

    def stop(self) -> None:
        if not self.running:
            self.aborting = True  # second signal: stop retrying
        self.running = False

    def _service(self) -> None:
        self.producer.poll(0)
        self.sample.maybe_flush()
        self._fold_counts()
        self._produce_again()
        t = time.monotonic()
        if t >= self._next_commit:
            self._commit(sync=False)
            self._next_commit = t + self.s.commit_interval_ms / 1000
        if t >= self._next_stats:
            self._stats(t)
        if t >= self._next_sweep:
            self._next_sweep = t + SWEEP_S
            self._sweep()

    def _sweep(self) -> None:
        self.states.sweep()
        for why, n in self.states.evicted.items():
            if n:
                self.metrics.symbols_evicted.labels(why).inc(n)
        self.states.evicted = dict.fromkeys(self.states.evicted, 0)
        self.metrics.symbols.set(len(self.states))

    # --- input ------------------------------------------------------------------
    def _handle(self, msgs: list[Message]) -> None:
        now = self.clock()
        rows: list[list[float]] = []
        meta: list[tuple[int, int, Tick]] = []
        warming: list[tuple[int, int, Tick]] = []
        order = bytearray()
        backfill: set[tuple[int, int]] = set()
        old = now - int(self.s.backfill_min_age_s * 1000)  # only older ticks may be backfill
        state_of, flood = self.states.get, self.states.max_window_ticks  # hot loop: locals
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    self.metrics.errors.labels("kafka_consume").inc()
                    logger.warning("consume error: %s", err)
                continue
            p, off = m.partition(), m.offset()
            assert p is not None and off is not None  # None only on errored messages
            warm = self.warm_until.get(p)
            if warm is not None:
                if off < warm:
                    self._warm(p, m.value(), now)
                    continue
                del self.warm_until[p]
            acks = self.acks.get(p)
            if acks is None:  # partition no longer ours (revoked during this batch)
                continue
            acks.track(off)
            try:
                tick = decode_tick(m.value(), now, self.s.max_future_ms)
            except BadTick as exc:
                self._dead_letter(m, str(exc), exc.kind)
                continue
            st = state_of(p, tick.symbol)
            if st.held >= flood:  # states.flooded, inline: the hot loop
                self._dead_letter_tick(
                    p, off, tick, self.states.flood_reason(st), contract.REASON_SYMBOL_FLOOD
                )
                continue
            row = st.update(tick.event_time_ms, tick.price, tick.size, tick.bid, tick.ask)
            if tick.event_time_ms < old and BACKFILL_HEADER in (m.headers() or ()):
                backfill.add((p, off))  # headers are read for old ticks only: the hot loop
            if st.ready:
                rows.append(row)
                meta.append((p, off, tick))
                order.append(1)
            else:
                warming.append((p, off, tick))
                order.append(0)
        self.metrics.consumed.inc(len(msgs))
        self.metrics.warming_up.inc(len(warming))
        if rows:
            x = np.array(rows, dtype=np.float32)
            if np.isinf(x).any():  # a backstop: decode_tick's bounds keep features finite
                x, meta, order = self._drop_infinite(x, meta, order)
            if len(x):
                self._submit(x, meta, warming, bytes(order), backfill)
                return
        if warming:  # answered in order with the batches in flight, without a call
            span = trace.INVALID_SPAN
            self.inflight.append(  # order: every tick warming up (all zeros)
                Batch(
                    [],
                    None,
                    None,
                    time.monotonic(),
                    span,
                    span,
                    (),
                    warming,
                    bytes(len(warming)),
                    backfill,
                )
            )

    def _drop_infinite(
        self, x: np.ndarray, meta: list, order: bytearray
    ) -> tuple[np.ndarray, list, bytearray]:
        """Dead-letter the ticks whose features overflow float32, so that one tick never
        makes the server reject its neighbours' batch."""
        bad = np.isinf(x).any(axis=1)
        for i in np.flatnonzero(bad):
            p, off, tick = meta[i]
            col = FEATURE_NAMES[int(np.flatnonzero(np.isinf(x[i]))[0])]
            reason = f"feature '{col}' of this tick overflows float32"
            self._dead_letter_tick(p, off, tick, reason, contract.REASON_FEATURE_OVERFLOW)
        keep = ~bad
        scored = iter(keep.tolist())  # drop the dead-lettered ticks from the order too
        order = bytearray(o for o in order if not o or next(scored))
        kept = [m for m, k in zip(meta, keep, strict=True) if k]
        return np.ascontiguousarray(x[keep]), kept, order

    def _warm(self, p: int, raw: bytes | None, now: int) -> None:
        try:
            tick = decode_tick(raw, now, self.s.max_future_ms)
        except BadTick:
            return
        st = self.states.get(p, tick.symbol)
        if not self.states.flooded(st):  # as when it was scored
            st.update(tick.event_time_ms, tick.price, tick.size, tick.bid, tick.ask)

    # --- Predict ------------------------------------------------------------------
    def _submit(
        self,
        x: np.ndarray,
        meta: list[tuple[int, int, Tick]],
        warming: list[tuple[int, int, Tick]],
        order: bytes,
        backfill: set[tuple[int, int]],
    ) -> None:
        rows = x
        req = pb.PredictRequest(
            packed=pb.PackedRows(float32_le=x.tobytes(), num_features=N_FEATURES)
        )
        span = self.tracer.start_span("consumer.batch", attributes={"volspike.rows": len(rows)})
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
        self.inflight.append(
            Batch(meta, req, fut, time.monotonic(), span, call_span, md, warming, order, backfill)
        )
        self.metrics.batch_rows.observe(len(rows))

    def _complete(self, drain: bool = False) -> None:
        """Finish batches in order: the oldest first, waiting only when the in-flight
        bound is reached (or when draining)."""
        while self.inflight:
            head = self.inflight[0]
            done = head.future is None or head.future.done()
            if not (drain or done or len(self.inflight) >= self.s.max_in_flight):
                return
            self.inflight.popleft()
            resp = self._response(head) if head.future is not None else pb.PredictResponse()
            if resp is not None and head.meta and self._schema_refused(head, resp.artifact):
                resp = None  # unconfirmed, or for other columns: dead letters
            head.call_span.end()
            if resp is None:
                head.span.end()
                self._answer_warming(head)  # the scored ticks are dead letters
                continue
            now = self.clock()
            topic = self.s.predictions_topic
            artifact = resp.artifact
            if head.meta:
                self._observe_drift(head, resp)
            scored = zip(head.meta, resp.probabilities, resp.labels, strict=True)
            if not head.warming:  # the usual case: every tick scored, in order
                for (p, off, tick), prob, label in scored:
                    value = encode_prediction(tick, p, off, prob, label, artifact, now)
                    self._produce(topic, tick.symbol, value, None, p, off, tick.event_time_ms)
                answered = head.meta
            else:
                warming = iter(head.warming)
                for o in head.order:
                    if o:
                        (p, off, tick), prob, label = next(scored)
                        value = encode_prediction(tick, p, off, prob, label, artifact, now)
                    else:
                        p, off, tick = next(warming)
                        value = encode_prediction(tick, p, off, None, None, None, now)
                    self._produce(topic, tick.symbol, value, None, p, off, tick.event_time_ms)
                answered = [*head.meta, *head.warming]  # every answer counts for freshness
            if head.backfill:  # answered, but outside the freshness SLI: counted apart
                answered = self._count_backfill(answered, head.backfill)
            event_ms = np.fromiter(
                (m[2].event_time_ms for m in answered), np.float64, len(answered)
            )
            if len(event_ms):
                self.metrics.e2e_lag.observe_batch((now - event_ms) / 1000.0)
            self.metrics.processing.observe(time.monotonic() - head.started)
            head.span.end()
            self.producer.poll(0)

    def _count_backfill(self, answered: list, backfill: set[tuple[int, int]]) -> list:
        """The answers that count for freshness; the backfill ones are counted apart."""
        live = [a for a in answered if (a[0], a[1]) not in backfill]
        self.metrics.backfill.inc(len(answered) - len(live))
        return live

    def _answer_warming(self, b: Batch) -> None:
        now = self.clock()
        if b.backfill:
            self._count_backfill(b.warming, b.backfill)
        for p, off, tick in b.warming:
            value = encode_prediction(tick, p, off, None, None, None, now)
            self._produce(
                self.s.predictions_topic, tick.symbol, value, None, p, off, tick.event_time_ms
            )

    def _observe_drift(self, b: Batch, resp: pb.PredictResponse) -> None:
        """Count this batch into the artifact's reference bins and the live sample. Drift
        is a side line: whatever goes wrong here costs no answer (counted, logged, and the
        artifact's bins are asked for again a minute later)."""
        try:
            ab = self._artifact_bins(resp.artifact)
            if ab is None:
                return
            assert b.request is not None  # a batch with scored rows has a request
            x = np.frombuffer(b.request.packed.float32_le, np.float32).reshape(-1, N_FEATURES)
            probs = np.asarray(resp.probabilities, np.float32)
            ab.observe(x, probs)
            self.sample.add(ab.artifact, ab.names, x, probs)
        except Exception:
            self.metrics.errors.labels("drift").inc()
            logger.exception("drift bins of %s failed; retrying in 60 s", resp.artifact[:64])
            self.metrics.drift.discard(resp.artifact)
            self._remember(self._drift_retry, resp.artifact, time.monotonic() + 60)

    def _artifact_bins(self, artifact: str) -> ArtifactBins | None:
        """The artifact's reference bins, from its manifest (ModelInfo); a manifest without
        usable bins is tried again a minute later. Either costs no answer."""
        ab = self.metrics.drift.by_artifact.get(artifact)
        if ab is not None:
            return ab
        if time.monotonic() < self._drift_retry.get(artifact, 0.0):
            return None
        info = self._model_info(artifact)
        if info is None:
            return None
        try:
            ab = ArtifactBins(artifact, json.loads(info.manifest_json))
        except Exception as exc:  # any manifest: never fatal
            logger.warning("no drift bins for %s (%s); retrying in 60 s", artifact, exc)
            self._remember(self._drift_retry, artifact, time.monotonic() + 60)
            return None
        self.metrics.drift.add(ab)
        return ab

    def _model_info(self, artifact: str) -> pb.ModelInfoResponse | None:
        """ModelInfo of ``artifact``, asked again after SCHEMA_RECHECK_S (5 s after a failure,
        which gives None: the callers go on without it). It blocks the loop, so its deadline
        is short: a healthy server answers in about a millisecond."""
        now = time.monotonic()
        info, until = self._info.get(artifact, (None, 0.0))
        if now < until:
            return info
        return self._ask_model_info(artifact)

    def _ask_model_info(self, artifact: str) -> pb.ModelInfoResponse | None:
        now = time.monotonic()
        try:
            info = self.stub.ModelInfo(pb.ModelInfoRequest(model=artifact), timeout=0.5)
        except grpc.RpcError as exc:
            logger.warning(
                "ModelInfo for %s failed (%s); asking again in 5 s", artifact[:64], exc.code()
            )
            self._remember(self._info, artifact, (None, now + 5.0))
            return None
        self._remember(self._info, artifact, (info, now + SCHEMA_RECHECK_S))
        return info

    @staticmethod
    def _remember(d: dict, artifact: str, value) -> None:
        """Per-artifact memory, the newest MAX_ARTIFACTS only."""
        d.pop(artifact, None)
        d[artifact] = value
        while len(d) > MAX_ARTIFACTS:
            del d[next(iter(d))]

    def _response(self, b: Batch) -> pb.PredictResponse | None:
        """The batch's answer, retried while the server is unavailable and asked again when
        malformed; None when its ticks were dead-lettered instead."""
        assert b.future is not None  # called only for batches that were sent
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
                problem = self._answer_problem(b, resp)
                if problem is None:
                    return resp
                self.metrics.errors.labels("bad_answer").inc()
                logger.warning("malformed answer (%s); asking again", problem)
                resp = self._retry(b, None)
        except grpc.RpcError as err:  # final, or a retry answered with a final error
            self._rejected(b, err)
            return None
        problem = self._answer_problem(b, resp)
        if problem is None:
            return resp
        self._dead_letter_batch(
            b, f"malformed answer from the server: {problem}", contract.REASON_BAD_ANSWER
        )
        return None

    @staticmethod
    def _answer_problem(b: Batch, resp: pb.PredictResponse | None) -> str | None:
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

    def _dead_letter_batch(self, b: Batch, reason: str, kind: str) -> None:
        logger.error(reason)
        b.call_span.set_status(Status(StatusCode.ERROR, kind))
        for p, off, tick in b.meta:
            self._dead_letter_tick(p, off, tick, reason, kind)

    def _schema_refused(self, b: Batch, artifact: str) -> bool:
        """Packed rows carry no names: an artifact listing other features than this consumer
        computes (same width, another order) would score the wrong columns. Checked once
        per artifact (ModelInfo) and again every SCHEMA_RECHECK_S (a server keeps one schema
        per process, but a restarted one may serve a rebuilt artifact of the same name).
        Fails closed: while ModelInfo fails, the batch waits (consumption paused) up to
        schema_wait_s from the first failure, then its ticks are dead letters
        (schema_unconfirmed) until ModelInfo answers again; never published unchecked."""
        info = self._model_info(artifact)
        if info is None:
            self.metrics.errors.labels("schema_check").inc()
            info = self._confirm_schema(artifact)
        if info is None:
            self._dead_letter_batch(
                b,
                f"ModelInfo could not confirm the feature list of artifact {artifact[:64]!r} "
                f"within {self.s.schema_wait_s:g} s; answers are never published unchecked",
                contract.REASON_SCHEMA_UNCONFIRMED,
            )
            return True
        self._unconfirmed.pop(artifact, None)
        names = tuple(info.feature_names)
        if names == FEATURE_NAMES:
            return False
        reason = (
            f"artifact {artifact} lists features {[n[:64] for n in names[:16]]}"
            f"{' and more' if len(names) > 16 else ''}; this consumer computes "
            f"{list(FEATURE_NAMES)}"
        )
        self._dead_letter_batch(b, reason, contract.REASON_SCHEMA_MISMATCH)
        return True

    def _confirm_schema(self, artifact: str) -> pb.ModelInfoResponse | None:
        """Ask ModelInfo again with backoff (consumption paused, group membership kept)
        until schema_wait_s after the artifact's first failure."""
        if artifact not in self._unconfirmed:
            self._remember(self._unconfirmed, artifact, time.monotonic())
        until = self._unconfirmed[artifact] + self.s.schema_wait_s
        if time.monotonic() >= until:
            return None
        assignment = self.consumer.assignment()
        self.consumer.pause(assignment)
        delay = 0.1
        try:
            while not self.aborting and time.monotonic() < until:
                self._sleep(min(delay, max(until - time.monotonic(), 0.0)))
                delay = min(delay * 2, 2.0)
                info = self._ask_model_info(artifact)
                if info is not None:
                    return info
            return None
        finally:
            self.consumer.resume(assignment)

    def _rejected(self, b: Batch, err: grpc.RpcError) -> None:
        """The server refused the batch for good: every scored tick is a dead letter."""
        code = err.code()
        b.call_span.set_status(Status(StatusCode.ERROR, str(code)))
        reason = f"Predict rejected the batch: {code.name}: {err.details()}"
        self._dead_letter_batch(b, reason, contract.REASON_PREDICT_REJECTED)

    def _retry(self, b: Batch, code: grpc.StatusCode | None) -> pb.PredictResponse:
        """Retry with capped exponential backoff and jitter; consumption is paused
        meanwhile so nothing piles up and nothing is dropped. ``code`` None: the last
        answer was malformed (counted as retries{code="BAD_ANSWER"})."""
        assignment = self.consumer.assignment()
        self.consumer.pause(assignment)
        delay = 0.05
        try:
            while not self.aborting:
                why = code.name if code is not None else "BAD_ANSWER"
                self.metrics.retries.labels(why).inc()
                logger.warning("Predict %s; retrying %d rows in %.2f s", why, len(b.meta), delay)
                self._sleep(delay * (0.5 + random.random() / 2))
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
        finally:
            self.consumer.resume(assignment)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.producer.poll(0.02)
            # keep the group membership alive; anything fetched is kept for later
            self.backlog.extend(self.consumer.consume(self.s.max_rows, 0))
            t = time.monotonic()
            if t >= self._next_stats:  # lag and throughput stay true while we wait
                self._stats(t, fresh=True)

    # --- output -------------------------------------------------------------------
    def _produce(
        self, topic: str, key, value: bytes | None, headers, p: int, off: int, event_ms: int
    ) -> None:
        cb = functools.partial(self._delivered, topic, key, value, headers, p, off, event_ms)
        while True:
            try:
                self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=cb)
                return
            except BufferError:  # local queue full: let deliveries drain first
                self.producer.poll(0.05)
            except KafkaException as exc:  # e.g. MSG_SIZE_TOO_LARGE: never fatal
                self._undeliverable(topic, key, value, headers, p, off, exc.args[0])
                return

    def _delivered(self, topic, key, value, headers, p, off, event_ms, err, _msg) -> None:
        if err is not None:
            self.metrics.errors.labels("delivery").inc()
            if err.retriable() or err.code() in _TRANSIENT:
                logger.warning("delivery to %s failed (%s); producing again", topic, err)
                self.redeliver.append((topic, key, value, headers, p, off, event_ms))
            else:
                self._undeliverable(topic, key, value, headers, p, off, err)
            return
        acks = self.acks.get(p)
        if acks is not None:
            acks.ack(off, event_ms)
        self._answered += 1
        if topic == self.s.predictions_topic:
            self._predicted += 1

    def _undeliverable(self, topic, key, value, headers, p, off, err: KafkaError) -> None:
        """Kafka refused this output for good. A prediction becomes a dead letter; a dead
        letter becomes a minimal one (reason, source, no value). Its offset stays
        uncommitted until one of them is acknowledged, so nothing is lost."""
        self.metrics.errors.labels("undeliverable").inc()
        logger.error("Kafka refused a message for %s (%s)", topic, err)
        why = f"Kafka refused the output for {topic}: {err.str()}"
        source = [h for h in headers or () if h[0].startswith("source_")] or [
            ("source_topic", self.s.ticks_topic.encode()),
            ("source_partition", str(p).encode()),
            ("source_offset", str(off).encode()),
        ]
        minimal = value is None and any(h[0] == "dead_letter_error" for h in headers or ())
        if minimal:  # even the minimal record was refused: keep trying, never ack
            self.redeliver.append((topic, key, value, headers, p, off, -1))
            return
        reason = [h for h in headers or () if h[0] == "error"] or [("error", why.encode())]
        reason.append(("reason", contract.REASON_UNDELIVERABLE.encode()))
        extra = [("dead_letter_error", why.encode()[:1024])]
        self.metrics.dead_lettered.labels(contract.REASON_UNDELIVERABLE).inc()
        self.redeliver.append(
            (self.s.dlq_topic, None, None, [*reason, *source, *extra], p, off, -1)
        )

    def _dead_letter(self, m: Message, reason: str, kind: str) -> None:
        """A message that is not a usable tick. Its Kafka timestamp is not trusted: -1
        keeps it out of the commit metadata the warm-up starts from."""
        self.metrics.dead_lettered.labels(kind).inc()
        p, off = m.partition(), m.offset()
        assert p is not None and off is not None  # None only on errored messages
        self._send_dead_letter(p, off, m.key(), m.value(), reason, kind, -1)

    def _dead_letter_tick(self, p: int, off: int, tick: Tick, reason: str, kind: str) -> None:
        self.metrics.dead_lettered.labels(kind).inc()
        self._send_dead_letter(
            p, off, tick.symbol, encode_tick(tick), reason, kind, tick.event_time_ms
        )

    def _send_dead_letter(
        self, p: int, off: int, key, value: bytes | None, reason: str, kind: str, event_ms: int
    ) -> None:
        headers = [
            ("error", reason.encode()[:1024]),
            ("reason", kind.encode()),  # the metric's label: one of a closed set
            ("source_topic", self.s.ticks_topic.encode()),
            ("source_partition", str(p).encode()),
            ("source_offset", str(off).encode()),
        ]
        limit = self.s.dead_letter_max_bytes
        if value is not None and len(value) > limit:
            headers += [
                ("truncated", b"true"),
                ("original_bytes", str(len(value)).encode()),
                ("original_sha256", hashlib.sha256(value).hexdigest().encode()),
            ]
            value = value[:limit]
        if key is not None and len(key) > 256:
            key = key[:256]
        self._produce(self.s.dlq_topic, key, value, headers, p, off, event_ms)

    # --- offsets --------------------------------------------------------------------
    def _commit(self, sync: bool, partitions: list[int] | None = None) -> None:
        offsets = []
        for p, acks in self.acks.items():
            if partitions is not None and p not in partitions:
                continue
            nxt = acks.advance()
            if nxt is not None:
                offsets.append(
                    TopicPartition(
                        self.s.ticks_topic, p, nxt, metadata=str(acks.committed_event_ms)
                    )
                )
        if not offsets:
            return
        try:
            if sync:  # two calls: the stubs' overloads take only a literal `asynchronous`
                self.consumer.commit(offsets=offsets, asynchronous=False)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=True)
        except Exception:
            self.metrics.errors.labels("commit").inc()
            logger.exception("commit failed")
            if partitions is not None:  # giving them up: remember what was answered
                for tp in offsets:
                    self.unsaved[tp.partition] = (tp.offset, tp.metadata)

    def _drain(self) -> None:
        self._complete(drain=True)
        while (self.redeliver or len(self.producer) > 0) and not self.aborting:
            self.producer.flush(5)
            self._produce_again()
        self._fold_counts()

    def _fold_counts(self) -> None:
        if self._predicted:
            self.metrics.predictions.inc(self._predicted)
            self._predicted = 0

    def _produce_again(self) -> None:
        """Re-produce outputs whose delivery failed (their offsets stay uncommitted)."""
        if self.redeliver:
            items, self.redeliver = self.redeliver, []
            for args in items:
                self._produce(*args)

    def _stats(self, t: float, fresh: bool = False) -> None:
        """Throughput and offset lag every 2 s. ``fresh``: ask the broker for the high
        watermarks (paused partitions fetch nothing, so the cached ones stand still)."""
        interval = 2.0
        if self._next_stats:
            done = self._answered - self._answered_at_stats
            self.metrics.throughput.set(done / interval)
        self._answered_at_stats = self._answered
        self._next_stats = t + interval
        for p in list(self.acks):
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(self.s.ticks_topic, p), cached=not fresh, timeout=1
                )
            except Exception:
                continue
            pos = self.acks[p].pending[0] if self.acks[p].pending else None
            if high >= 0 and pos is not None:
                self.metrics.offset_lag.labels(str(p)).set(high - pos)
            elif high >= 0:
                self.metrics.offset_lag.labels(str(p)).set(0)

    # --- rebalance ---------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = [
            self._restore_unsaved(consumer, tp) for tp in consumer.committed(partitions, timeout=30)
        ]
        for tp in committed:
            self.acks[tp.partition] = PartitionAcks()
            if tp.offset >= 0 and tp.metadata and tp.metadata.lstrip("-").isdigit():
                # never trust a future time (older versions could commit one)
                start_ms = min(int(tp.metadata), self.clock()) - self.s.warmup_ms
                found = consumer.offsets_for_times(
                    [TopicPartition(tp.topic, tp.partition, max(start_ms, 0))], timeout=30
                )[0]
                if 0 <= found.offset < tp.offset:
                    self.warm_until[tp.partition] = tp.offset
                    logger.info(
                        "partition %d: warming features from offset %d to %d",
                        tp.partition,
                        found.offset,
                        tp.offset,
                    )
                    tp.offset = found.offset
        consumer.assign(committed)
        logger.info("assigned partitions %s", sorted(tp.partition for tp in committed))

    def _restore_unsaved(self, consumer: Consumer, tp: TopicPartition) -> TopicPartition:
        """A partition lost with a failed commit (the group session timed out while the
        broker was away) and now ours again: every offset below what we remember was
        answered and acknowledged by Kafka, so commit it instead of answering it twice.
        If another member got further meanwhile, its commit stands."""
        saved = self.unsaved.pop(tp.partition, None)
        if saved is None or saved[0] <= tp.offset:
            return tp
        offset, metadata = saved
        mine = TopicPartition(tp.topic, tp.partition, offset, metadata=metadata)
        try:
            consumer.commit(offsets=[mine], asynchronous=False)
        except Exception:
            logger.exception(
                "committing the remembered offset of partition %d failed", tp.partition
            )
            return tp
        logger.info("partition %d: committed remembered offset %d", tp.partition, offset)
        return mine

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = [tp.partition for tp in partitions]
        logger.info("revoking partitions %s: finishing their work first", sorted(revoked))
        self._drain()
        self._commit(sync=True, partitions=revoked)
        for p in revoked:
            self.acks.pop(p, None)
            self.warm_until.pop(p, None)
        self.states.drop_partitions(revoked)
        self.backlog = [m for m in self.backlog if m.partition() not in revoked]
