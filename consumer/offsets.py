"""Offsets: which input offsets may be committed (only those whose output, prediction or
dead letter, Kafka has acknowledged, and every offset before them too), the commits, and
where a newly assigned partition starts (a remembered commit restored, the warm-up replay).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from consumer.metrics import ConsumerMetrics

logger = logging.getLogger("consumer.pipeline")


def acknowledge_py(groups: list[list], acks: dict[int, PartitionAcks], failed: set) -> None:
    """``acks[p].acked[off] = tick.event_time_ms`` for every row (p, off, tick) of every
    group, unless partition p is no longer ours or (p, off) is in ``failed``. The reference
    of the C loop (consumer/_acks.h), which runs when built."""
    for group in groups:
        for p, off, tick in group:
            a = acks.get(p)
            if a is not None and not (failed and (p, off) in failed):
                a.acked[off] = tick.event_time_ms


class PartitionAcks:
    __slots__ = ("acked", "committed_event_ms", "pending")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()  # offsets sent, in consumption order
        # offset -> event time, acknowledged by Kafka (written by Outputs.settle, in bulk)
        self.acked: dict[int, int] = {}
        self.committed_event_ms = -1  # event time of the last committable offset

    def track(self, offset: int) -> None:
        self.pending.append(offset)

    def advance(self) -> int | None:
        """The offset to commit (last contiguous acknowledged + 1), or None if unchanged."""
        last = None
        pending, acked = self.pending, self.acked
        while pending and pending[0] in acked:
            last = pending.popleft()
            t = acked.pop(last)
            if t > self.committed_event_ms:
                self.committed_event_ms = t
        return None if last is None else last + 1

    @property
    def in_flight(self) -> int:
        return len(self.pending)


acknowledge: Callable[[list[list], dict[int, PartitionAcks], set], None] = acknowledge_py
try:  # the C loop; `make models` builds it (compiled_models/build_fastcall.py)
    from consumer import _wire
except ImportError:  # not built yet: the Python reference
    pass
else:
    acknowledge = _wire.acknowledge


class Offsets:
    """The partitions this consumer holds: their acknowledgements, commits, and warm-up."""

    def __init__(
        self, topic: str, warmup_ms: int, clock: Callable[[], int], metrics: ConsumerMetrics
    ) -> None:
        self.topic, self.warmup_ms, self.clock, self.metrics = topic, warmup_ms, clock, metrics
        self.acks: dict[int, PartitionAcks] = {}
        self.warm_until: dict[int, int] = {}  # partition -> first offset to score
        # lost partition -> answered, uncommitted (offset, commit metadata)
        self.unsaved: dict[int, tuple[int, str | None]] = {}

    def commit(self, consumer: Consumer, sync: bool, partitions: list[int] | None = None) -> None:
        offsets = []
        for p, acks in self.acks.items():
            if partitions is not None and p not in partitions:
                continue
            nxt = acks.advance()
            if nxt is not None:
                meta = str(acks.committed_event_ms)
                offsets.append(TopicPartition(self.topic, p, nxt, metadata=meta))
        if not offsets:
            return
        try:
            if sync:  # two calls: the stubs' overloads take only a literal `asynchronous`
                consumer.commit(offsets=offsets, asynchronous=False)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
        except Exception:
            self.metrics.errors.labels("commit").inc()
            logger.exception("commit failed")
            if partitions is not None:  # giving them up: remember what was answered
                for tp in offsets:
                    self.unsaved[tp.partition] = (tp.offset, tp.metadata)

    def assigned(
        self, consumer: Consumer, partitions: list[TopicPartition]
    ) -> list[TopicPartition]:
        """Where each newly assigned partition starts: ``warmup_ms`` of event time before
        its commit (replayed into the feature state, not scored), the commit's metadata
        carrying the event time of the last committed tick."""
        committed = [
            self._restore_unsaved(consumer, tp) for tp in consumer.committed(partitions, timeout=30)
        ]
        for tp in committed:
            self.acks[tp.partition] = PartitionAcks()
            if tp.offset >= 0 and tp.metadata and tp.metadata.lstrip("-").isdigit():
                # never trust a future time (older versions could commit one)
                start_ms = min(int(tp.metadata), self.clock()) - self.warmup_ms
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
        return committed

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

    def forget(self, partitions: list[int]) -> None:
        for p in partitions:
            self.acks.pop(p, None)
            self.warm_until.pop(p, None)
