"""Which input offsets may be committed: only those whose output (prediction or
dead-letter) Kafka has acknowledged, and every offset before them too."""

from __future__ import annotations

from collections import deque


class PartitionAcks:
    __slots__ = ("acked", "committed_event_ms", "pending")

    def __init__(self) -> None:
        self.pending: deque[int] = deque()  # offsets sent, in consumption order
        self.acked: dict[int, int] = {}  # offset -> event time, acknowledged by Kafka
        self.committed_event_ms = -1  # event time of the last committable offset

    def track(self, offset: int) -> None:
        self.pending.append(offset)

    def ack(self, offset: int, event_ms: int) -> None:
        self.acked[offset] = event_ms

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
