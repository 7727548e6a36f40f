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

The stages, one job each (the walk of a tick in ``_tick``, top to bottom):
consumer/intake.py (decode and features), consumer/batcher.py (batches in flight, in
order), consumer/predict_client.py (the call, retries, answer checks),
consumer/model_info.py (ModelInfo off the loop, the schema check), consumer/drift_watch.py,
consumer/outputs.py (predictions, dead letters, deliveries) and consumer/offsets.py
(acknowledgements, commits, assignments).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from opentelemetry import trace

from consumer.batcher import InFlight, warming_only
from consumer.clock import SteadyWallClock
from consumer.config import ConsumerSettings
from consumer.drift import LiveSample
from consumer.drift_watch import DriftWatch
from consumer.intake import Intake
from consumer.metrics import ConsumerMetrics
from consumer.model_info import ModelInfos, SchemaCheck
from consumer.offsets import Offsets, PartitionAcks
from consumer.outputs import STALL_SHARE, DeliveryFailures, Outputs
from consumer.predict_client import PredictClient
from consumer.states import SymbolStates
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc

logger = logging.getLogger(__name__)
SWEEP_S = 10.0
"""How often symbols that can no longer be warm are dropped (consumer/states.py)."""
STATS_S = 2.0
"""How often throughput and offset lag are set."""


class Pipeline:
    def __init__(
        self,
        settings: ConsumerSettings,
        consumer: Consumer,
        producer: Producer,
        stub: pb_grpc.PredictorStub,
        metrics: ConsumerMetrics,
        tracer: trace.Tracer,
        failures: DeliveryFailures,
    ) -> None:
        """``failures``: the producer's ``on_delivery`` (consumer.outputs.producer_config);
        the producer reports failed deliveries only, so a failure it cannot report there
        would read as delivered."""
        s = self.s = settings
        self.consumer, self.producer, self.stub, self.metrics = consumer, producer, stub, metrics
        self.clock = SteadyWallClock()  # event times are judged against it
        self.states = SymbolStates(s.max_symbols, s.max_window_ticks, s.max_future_ms)
        self.offsets = Offsets(s.ticks_topic, s.warmup_ms, self.clock, metrics)
        self.outputs = Outputs(
            s,
            producer,
            metrics,
            self.offsets.acks,
            self.clock,
            failures,
        )
        self.intake = Intake(s, self.states, self.offsets, self.outputs, metrics, self.clock)
        self.inflight = InFlight(s.max_in_flight)
        self.predict = PredictClient(
            s, stub, metrics, tracer, self.outputs, self._paused, self._wait, self._aborting
        )
        self.infos = ModelInfos(stub)
        self.schema = SchemaCheck(
            s, self.infos, self.outputs, metrics, self._paused_wait, self._aborting
        )
        self.sample = LiveSample(
            Path(s.live_sample_dir),
            s.live_sample_rows,
            s.live_sample_flush_s,
            f"{s.group_id}-{socket.gethostname()}-{os.getpid()}",
            window_s=s.live_sample_window_s,
        )
        self.drift = DriftWatch(self.infos, self.sample, metrics)
        self.backlog: list[Message] = []  # messages read while paused
        self.running = True
        self.aborting = False
        self._input_held = False
        self._next_commit = self._next_stats = 0.0
        self._next_sweep = time.monotonic() + SWEEP_S
        self._answered_at_stats = 0

    @property
    def acks(self) -> dict[int, PartitionAcks]:
        return self.offsets.acks

    # --- the loop ------------------------------------------------------------------------
    def run(self) -> None:
        self.consumer.subscribe(
            [self.s.ticks_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_revoke,
        )
        while self.running:
            self._tick()
        logger.info("stopping: finishing %d in-flight batches", len(self.inflight))
        self._drain()
        self.offsets.commit(self.consumer, sync=True)
        self.sample.flush()
        self.infos.close()
        self.consumer.close()

    def stop(self) -> None:
        if not self.running:
            self.aborting = True  # second signal: stop retrying
        self.running = False

    def _tick(self) -> None:
        """One turn: read, decode + features, send; answer what is done, in order; then
        deliveries, commits and stats."""
        msgs = self._read()
        if msgs:
            self._handle(msgs)
        self._complete()
        self._service()

    def _read(self) -> list[Message]:
        """The backlog, or up to max_rows ticks within max_wait_ms. Nothing while every slot is
        taken behind a batch that waits for ModelInfo: input is paused (the group kept),
        and the loop goes on."""
        wait = self.s.max_wait_ms / 1000
        if self.inflight.full():
            self.consumer.pause(self.consumer.assignment())
            self._input_held = True
            self.backlog.extend(self.consumer.consume(self.s.max_rows, wait))
            return []
        if self._input_held:
            self.consumer.resume(self.consumer.assignment())
            self._input_held = False
        msgs = self.backlog or self.consumer.consume(self.s.max_rows, wait)
        self.backlog = []
        return msgs

    def _handle(self, msgs: list[Message]) -> None:
        """Decode + features; the scored rows' Predict call goes out at once. A batch of
        warming-up ticks only is answered in order with the others, without a call."""
        r = self.intake.read(msgs)
        if len(r.x):
            self.inflight.append(self.predict.submit(r.x, r.meta, r.warming, r.order, r.backfill))
        elif r.warming:
            self.inflight.append(warming_only(r.warming, r.backfill))

    def _complete(self, drain: bool = False) -> None:
        """Finish batches in order: the oldest first, waiting for Predict only when the
        in-flight bound is reached (or when draining). A batch whose artifact ModelInfo
        has yet to confirm waits at the head without holding the loop (drained: waited
        for)."""
        q = self.inflight
        while q:
            head = q[0]
            if not head.answered:
                if not (drain or head.done() or q.full()):
                    return
                answer = self.predict.answer(head)
                if not q or q[0] is not head:  # a rebalance during its retries finished it
                    continue
                head.answer, head.answered = answer, True
            resp = head.answer
            if resp is not None and head.meta:
                verdict = self.schema.passes(head, resp.artifact, wait=drain)
                if verdict is None:
                    return
                if not verdict:
                    resp = None  # unconfirmed, or for other columns: dead letters
            q.popleft()
            head.call_span.end()
            if resp is None:
                head.span.end()
                self.outputs.answer_warming(head)  # the scored ticks are dead letters
                continue
            if head.meta:
                self.drift.observe(head, resp)
            self.outputs.answer(head, resp)

    def _service(self) -> None:
        commit = time.monotonic() >= self._next_commit
        # acknowledge what Kafka took once its queue is empty; before a commit, wait for it
        self.outputs.settle(wait=commit)
        self.sample.maybe_flush()
        self.outputs.fold_counts()
        t = time.monotonic()
        if commit:
            self.offsets.commit(self.consumer, sync=False)
            # a wait for Kafka takes at most STALL_SHARE of the time: a far broker or a
            # stuck record spaces the commits out instead of stalling the loop
            interval = max(self.s.commit_interval_ms / 1000, self.outputs.waited / STALL_SHARE)
            self._next_commit = t + interval
        if t >= self._next_stats:
            self._stats(t)
        if t >= self._next_sweep:
            self._next_sweep = t + SWEEP_S
            self._sweep()

    def _drain(self) -> None:
        self._complete(drain=True)
        self.outputs.flush(self._aborting)

    # --- waiting inside a stage ------------------------------------------------------------
    def _aborting(self) -> bool:
        return self.aborting

    def _wait(self, seconds: float) -> None:
        self._sleep(seconds)  # late-bound: tests replace _sleep

    def _paused_wait(self, seconds: float) -> None:
        """A drained batch waits for ModelInfo with consumption paused."""
        with self._paused():
            self._sleep(seconds)

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.producer.poll(0.02)
            # keep the group membership alive; anything fetched is kept for later
            self.backlog.extend(self.consumer.consume(self.s.max_rows, 0))
            t = time.monotonic()
            if t >= self._next_stats:  # lag and throughput stay true while we wait
                self._stats(t, fresh=True)

    @contextmanager
    def _paused(self) -> Iterator[None]:
        assignment = self.consumer.assignment()
        self.consumer.pause(assignment)
        try:
            yield
        finally:
            self.consumer.resume(assignment)

    # --- housekeeping --------------------------------------------------------------------
    def _sweep(self) -> None:
        self.states.sweep()
        for why, n in self.states.evicted.items():
            if n:
                self.metrics.symbols_evicted.labels(why).inc(n)
        self.states.evicted = dict.fromkeys(self.states.evicted, 0)
        self.metrics.symbols.set(len(self.states))

    def _stats(self, t: float, fresh: bool = False) -> None:
        """Throughput and offset lag every 2 s. ``fresh``: ask the broker for the high
        watermarks (paused partitions fetch nothing, so the cached ones stand still)."""
        answered = self.outputs.answered
        if self._next_stats:
            done = answered - self._answered_at_stats
            self.metrics.throughput.set(done / STATS_S)
        self._answered_at_stats = answered
        self._next_stats = t + STATS_S
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

    # --- rebalance -----------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        committed = self.offsets.assigned(consumer, partitions)
        consumer.assign(committed)
        logger.info("assigned partitions %s", sorted(tp.partition for tp in committed))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoked = [tp.partition for tp in partitions]
        logger.info("revoking partitions %s: finishing their work first", sorted(revoked))
        self._drain()
        self.offsets.commit(self.consumer, sync=True, partitions=revoked)
        self.offsets.forget(revoked)
        self.states.drop_partitions(revoked)
        self.backlog = [m for m in self.backlog if m.partition() not in revoked]
