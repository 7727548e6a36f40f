"""Outputs: every record the consumer writes (predictions in read order, dead letters with
their reason), delivered at-least-once: a delivery acknowledged by Kafka acknowledges its
input offset (consumer/offsets.py); one that failed is produced again, and one Kafka refuses
for good becomes a dead letter, so no offset is committed unanswered.

Acknowledgements are settled per generation, not per record: the producer reports failed
deliveries only (``delivery.report.only.error``), so a successful one costs no Python
callback. When the producer's queue is empty (nothing waiting, in flight or unreported),
every output produced since the last settle has been delivered except those reported
failed, and their input offsets are acknowledged together. Under a load that never lets
the queue empty, the settle before a commit waits for it (``producer.flush``), so a commit
covers every output produced before it. That wait stalls the loop about one broker round
trip; the pipeline spaces such commits so that waiting takes at most ``STALL_SHARE`` of the
time (consumer/pipeline.py): every ``commit_interval_ms`` on a near broker, less often on a
far one or while a record is stuck (no leader, a slow replica).
A failed output is produced again only after its generation settled, so a failure always
names the attempt it belongs to."""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable

import numpy as np
import orjson
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry.trace import Status, StatusCode

from consumer.batcher import Batch
from consumer.config import ConsumerSettings
from consumer.messages import encode_prediction, encode_tick
from consumer.metrics import ConsumerMetrics
from consumer.offsets import PartitionAcks, acknowledge
from market.ticks import Tick
from proto.volatility.v1 import predictor_pb2 as pb
from telemetry import names_gen as contract

logger = logging.getLogger("consumer.pipeline")  # one name for the consumer's log lines
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
FLUSH_S = 1.0
"""How long one settle first waits for the queue to empty before the loop goes on: doubled
after a wait that was not enough (up to FLUSH_MAX_S), so records slower than it are still
committed; twice the last wait that was."""
FLUSH_MAX_S = 30.0
STALL_SHARE = 0.1
"""The share of time the loop may spend waiting for Kafka's answers before commits."""

Output = tuple  # (topic, key, value, headers, partition, offset, event_ms): one record


class DeliveryFailures(list):
    """The producer's delivery callback (``on_delivery`` in its config): with
    ``delivery.report.only.error`` it is called for failed deliveries only. It keeps them
    for ``Outputs.settle``; a record produced with a callback of its own (a dead letter)
    reports there instead."""

    def __call__(self, err: KafkaError, msg: Message) -> None:
        self.append((err, msg))


def producer_config(failures: DeliveryFailures) -> dict:
    """What the consumer's producer needs for these outputs (merged into its config)."""
    return {"delivery.report.only.error": True, "on_delivery": failures}


class Outputs:
    def __init__(
        self,
        settings: ConsumerSettings,
        producer: Producer,
        metrics: ConsumerMetrics,
        acks: dict[int, PartitionAcks],
        clock: Callable[[], int],
        failures: DeliveryFailures,
    ) -> None:
        self.s, self.producer, self.metrics, self.acks, self.clock = (
            settings,
            producer,
            metrics,
            acks,
            clock,
        )
        self.failures = failures  # the producer's failed deliveries, not yet handled
        self.redeliver: list[Output] = []  # failed outputs, produced again after a settle
        self.answered = 0  # outputs acknowledged by Kafka (the throughput gauge)
        self._predicted = 0  # folded into the Prometheus counter once per loop
        # this generation: what was produced since the last settle, and what of it failed
        self._answers: list[list] = []  # groups of (partition, offset, tick)
        self._others: list[tuple[int, int, int]] = []  # (partition, offset, event_ms)
        self._failed: set[tuple[int, int]] = set()
        self._n_predictions = self._failed_predictions = 0
        self.waited = 0.0  # how long the last settle waited for Kafka
        self._flush_s = FLUSH_S

    # --- answers ----------------------------------------------------------------------
    def answer(self, b: Batch, resp: pb.PredictResponse) -> None:
        """The batch's predictions, scored and warming up, in the order they were read."""
        now = self.clock()
        topic = self.s.predictions_topic
        artifact = resp.artifact
        scored = zip(b.meta, resp.probabilities, resp.labels, strict=True)
        produce = self.producer.produce  # the hot loop: one call per answer, no callback
        self._answers.append(b.meta)
        if not b.warming:  # the usual case: every tick scored, in order
            for (p, off, tick), prob, label in scored:
                value = encode_prediction(tick, p, off, prob, label, artifact, now)
                try:
                    produce(topic, value, tick.symbol)
                except (BufferError, KafkaException):
                    self._produce_slowly(topic, tick.symbol, value, p, off, tick.event_time_ms)
            answered = b.meta
        else:
            self._answers.append(b.warming)
            warming = iter(b.warming)
            for o in b.order:
                if o:
                    (p, off, tick), prob, label = next(scored)
                    value = encode_prediction(tick, p, off, prob, label, artifact, now)
                else:
                    p, off, tick = next(warming)
                    value = encode_prediction(tick, p, off, None, None, None, now)
                try:
                    produce(topic, value, tick.symbol)
                except (BufferError, KafkaException):
                    self._produce_slowly(topic, tick.symbol, value, p, off, tick.event_time_ms)
            answered = [*b.meta, *b.warming]  # every answer counts for freshness
        self._n_predictions += len(b.meta) + len(b.warming)
        if b.backfill:  # answered, but outside the freshness SLI: counted apart
            answered = self._count_backfill(answered, b.backfill)
        event_ms = np.fromiter((m[2].event_time_ms for m in answered), np.float64, len(answered))
        if len(event_ms):
            self.metrics.e2e_lag.observe_batch((now - event_ms) / 1000.0)
        self.metrics.processing.observe(time.monotonic() - b.started)
        b.span.end()  # no poll here: settle polls once a turn (each poll lets the GIL go)

    def answer_warming(self, b: Batch) -> None:
        """The warming-up ticks of a batch whose scored ticks became dead letters."""
        now = self.clock()
        if b.backfill:
            self._count_backfill(b.warming, b.backfill)
        topic = self.s.predictions_topic
        self._answers.append(b.warming)
        self._n_predictions += len(b.warming)
        for p, off, tick in b.warming:
            value = encode_prediction(tick, p, off, None, None, None, now)
            self._produce_slowly(topic, tick.symbol, value, p, off, tick.event_time_ms)

    def _count_backfill(self, answered: list, backfill: set[tuple[int, int]]) -> list:
        """The answers that count for freshness; the backfill ones are counted apart."""
        live = [a for a in answered if (a[0], a[1]) not in backfill]
        self.metrics.backfill.inc(len(answered) - len(live))
        return live

    # --- dead letters -------------------------------------------------------------------
    def dead_letter(self, m: Message, reason: str, kind: str) -> None:
        """A message that is not a usable tick. Its Kafka timestamp is not trusted: -1
        keeps it out of the commit metadata the warm-up starts from."""
        self.metrics.dead_lettered.labels(kind).inc()
        p, off = m.partition(), m.offset()
        assert p is not None and off is not None  # None only on errored messages
        self._send_dead_letter(p, off, m.key(), m.value(), reason, kind, -1)

    def dead_letter_tick(self, p: int, off: int, tick: Tick, reason: str, kind: str) -> None:
        self.metrics.dead_lettered.labels(kind).inc()
        self._send_dead_letter(
            p, off, tick.symbol, encode_tick(tick), reason, kind, tick.event_time_ms
        )

    def dead_letter_batch(self, b: Batch, reason: str, kind: str) -> None:
        """Every scored tick of ``b`` (its warming-up ticks are still answered)."""
        logger.error(reason)
        b.call_span.set_status(Status(StatusCode.ERROR, kind))
        for p, off, tick in b.meta:
            self.dead_letter_tick(p, off, tick, reason, kind)

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
        self.produce(self.s.dlq_topic, key, value, headers, p, off, event_ms)

    # --- delivery -------------------------------------------------------------------------
    def _produce_slowly(self, topic: str, key, value: bytes, p: int, off: int, ev: int) -> None:
        """A prediction whose produce call raised (or one off the hot loop): produced with
        the general path; its record is already in this generation's answers."""
        self._produce(topic, key, value, None, p, off, ev, None)

    def produce(
        self, topic: str, key, value: bytes | None, headers, p: int, off: int, event_ms: int
    ) -> None:
        """A record that reports its own failure (a dead letter, a record produced again),
        acknowledged with this generation."""
        self._others.append((p, off, event_ms))
        if topic == self.s.predictions_topic:
            self._n_predictions += 1
        cb = functools.partial(self._failed_output, topic, key, value, headers, p, off, event_ms)
        self._produce(topic, key, value, headers, p, off, event_ms, cb)

    def _produce(self, topic, key, value, headers, p, off, event_ms, cb) -> None:
        while True:
            try:
                if cb is None:  # a prediction: the producer's own callback reports failure
                    self.producer.produce(topic, value, key)
                else:
                    self.producer.produce(topic, value, key, headers=headers, on_delivery=cb)
                return
            except BufferError:  # local queue full: let deliveries drain first
                self.producer.poll(0.05)
            except KafkaException as exc:  # e.g. MSG_SIZE_TOO_LARGE: a dead letter instead
                _crash_if_fatal(exc.args[0])
                self._failed_now(topic, p, off)
                self._undeliverable(topic, key, value, headers, p, off, exc.args[0])
                return

    def _failed_output(self, topic, key, value, headers, p, off, event_ms, err, _msg) -> None:
        """A record with its own callback failed (called for failures only)."""
        self.failures.append((err, (topic, key, value, headers, p, off, event_ms)))

    def _failed_now(self, topic: str, p: int, off: int) -> None:
        self._failed.add((p, off))
        if topic == self.s.predictions_topic:
            self._failed_predictions += 1

    def _handle_failures(self) -> None:
        """Failed deliveries reported since the last look: produced again (after the settle)
        or, refused for good, replaced by a dead letter."""
        failures = list(self.failures)
        self.failures.clear()
        for err, what in failures:
            # a prediction is reported by the producer's callback: its value names its tick
            output = what if isinstance(what, tuple) else _prediction_output(what)
            topic, key, value, headers, p, off, _ = output
            _crash_if_fatal(err)
            self._failed_now(topic, p, off)
            self.metrics.errors.labels("delivery").inc()
            if err.retriable() or err.code() in _TRANSIENT:
                logger.warning("delivery to %s failed (%s); producing again", topic, err)
                self.redeliver.append(output)
            else:
                self._undeliverable(topic, key, value, headers, p, off, err)

    def settle(self, wait: bool = False) -> bool:
        """Acknowledge this generation's delivered outputs if the producer's queue is
        empty (``wait``: waiting for it, FLUSH_S at first), then produce the failed ones
        again. True when settled."""
        self.waited = 0.0
        self.producer.poll(0)  # failure reports into self.failures
        if len(self.producer):
            if not wait:
                return False
            t = time.monotonic()
            self.producer.flush(self._flush_s)
            self.waited = time.monotonic() - t
            if len(self.producer):
                self._flush_s = min(2 * self._flush_s, FLUSH_MAX_S)
                return False
            self._flush_s = max(FLUSH_S, 2 * self.waited)
        if self.failures:
            self._handle_failures()
        self._acknowledge()
        self.produce_again()
        return True

    def _acknowledge(self) -> None:
        """Everything produced since the last settle was delivered, except ``_failed``."""
        acks_of, failed = self.acks.get, self._failed
        acknowledge(self._answers, self.acks, failed)  # C when built: one call, every row
        n = sum(map(len, self._answers))
        for p, off, event_ms in self._others:
            acks = acks_of(p)
            if acks is not None and not (failed and (p, off) in failed):
                acks.acked[off] = event_ms
        n += len(self._others)
        self.answered += n - len(failed)
        self._predicted += self._n_predictions - self._failed_predictions
        self._answers, self._others, self._failed = [], [], set()
        self._n_predictions = self._failed_predictions = 0

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

    def produce_again(self) -> None:
        """Re-produce outputs whose delivery failed (their offsets stay uncommitted)."""
        if self.redeliver:
            items, self.redeliver = self.redeliver, []
            for args in items:
                self.produce(*args)

    def pending(self) -> bool:
        """Outputs not yet acknowledged (produced, failed or to be produced again)."""
        return bool(self._answers or self._others or self.redeliver or self.failures)

    def flush(self, aborting: Callable[[], bool]) -> None:
        """Until every output is delivered and acknowledged (or a second signal says stop)."""
        while self.pending() and not aborting():
            self.settle(wait=True)
        self.fold_counts()

    def fold_counts(self) -> None:
        if self._predicted:
            self.metrics.predictions.inc(self._predicted)
            self._predicted = 0


class FatalProducerError(RuntimeError):
    """The idempotent producer failed for good (librdkafka's fatal error): every later
    produce would fail too, so the consumer exits and a restart, with a new producer,
    answers everything after the last commit again."""


def _crash_if_fatal(err: KafkaError) -> None:
    if err.fatal() or err.code() == KafkaError._FATAL:
        raise FatalProducerError(f"Kafka producer: {err}")


def _prediction_output(msg: Message) -> Output:
    """The output a failed prediction was (its tick is in its own value)."""
    value = msg.value()
    try:
        rec = orjson.loads(value or b"")
        p, off, ev = rec["source_partition"], rec["source_offset"], rec["event_time_ms"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        # every prediction is encode_prediction's: this cannot happen; if it did, crash
        # rather than acknowledge an offset whose answer Kafka did not take
        raise RuntimeError(f"a failed delivery to {msg.topic()} is not a prediction") from exc
    return (msg.topic(), msg.key(), value, None, p, off, ev)
