"""Outputs: every record the consumer writes (predictions in read order, dead letters with
their reason), delivered at-least-once: a delivery acknowledged by Kafka acknowledges its
input offset (consumer/offsets.py); one that failed is produced again, and one Kafka refuses
for good becomes a dead letter, so no offset is committed unanswered."""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable

import numpy as np
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from opentelemetry.trace import Status, StatusCode

from consumer.batcher import Batch
from consumer.config import ConsumerSettings
from consumer.messages import encode_prediction, encode_tick
from consumer.metrics import ConsumerMetrics
from consumer.offsets import PartitionAcks
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


class Outputs:
    def __init__(
        self,
        settings: ConsumerSettings,
        producer: Producer,
        metrics: ConsumerMetrics,
        acks: dict[int, PartitionAcks],
        clock: Callable[[], int],
    ) -> None:
        self.s, self.producer, self.metrics, self.acks, self.clock = (
            settings,
            producer,
            metrics,
            acks,
            clock,
        )
        self.redeliver: list[tuple] = []
        self.answered = 0  # outputs acknowledged by Kafka (the throughput gauge)
        self._predicted = 0  # folded into the Prometheus counter once per loop

    # --- answers ----------------------------------------------------------------------
    def answer(self, b: Batch, resp: pb.PredictResponse) -> None:
        """The batch's predictions, scored and warming up, in the order they were read."""
        now = self.clock()
        topic = self.s.predictions_topic
        artifact = resp.artifact
        scored = zip(b.meta, resp.probabilities, resp.labels, strict=True)
        if not b.warming:  # the usual case: every tick scored, in order
            for (p, off, tick), prob, label in scored:
                value = encode_prediction(tick, p, off, prob, label, artifact, now)
                self.produce(topic, tick.symbol, value, None, p, off, tick.event_time_ms)
            answered = b.meta
        else:
            warming = iter(b.warming)
            for o in b.order:
                if o:
                    (p, off, tick), prob, label = next(scored)
                    value = encode_prediction(tick, p, off, prob, label, artifact, now)
                else:
                    p, off, tick = next(warming)
                    value = encode_prediction(tick, p, off, None, None, None, now)
                self.produce(topic, tick.symbol, value, None, p, off, tick.event_time_ms)
            answered = [*b.meta, *b.warming]  # every answer counts for freshness
        if b.backfill:  # answered, but outside the freshness SLI: counted apart
            answered = self._count_backfill(answered, b.backfill)
        event_ms = np.fromiter((m[2].event_time_ms for m in answered), np.float64, len(answered))
        if len(event_ms):
            self.metrics.e2e_lag.observe_batch((now - event_ms) / 1000.0)
        self.metrics.processing.observe(time.monotonic() - b.started)
        b.span.end()
        self.producer.poll(0)

    def answer_warming(self, b: Batch) -> None:
        """The warming-up ticks of a batch whose scored ticks became dead letters."""
        now = self.clock()
        if b.backfill:
            self._count_backfill(b.warming, b.backfill)
        for p, off, tick in b.warming:
            value = encode_prediction(tick, p, off, None, None, None, now)
            self.produce(
                self.s.predictions_topic, tick.symbol, value, None, p, off, tick.event_time_ms
            )

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
    def produce(
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
        self.answered += 1
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

    def produce_again(self) -> None:
        """Re-produce outputs whose delivery failed (their offsets stay uncommitted)."""
        if self.redeliver:
            items, self.redeliver = self.redeliver, []
            for args in items:
                self.produce(*args)

    def flush(self, aborting: Callable[[], bool]) -> None:
        """Until every output is delivered (or a second signal says stop)."""
        while (self.redeliver or len(self.producer) > 0) and not aborting():
            self.producer.flush(5)
            self.produce_again()
        self.fold_counts()

    def fold_counts(self) -> None:
        if self._predicted:
            self.metrics.predictions.inc(self._predicted)
            self._predicted = 0
