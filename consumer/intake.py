"""Decode and features: a read of the ticks topic becomes feature rows. Each tick is
validated (consumer/messages.py; a bad one is a dead letter), its offset tracked for the
commit, and its symbol's feature state updated (consumer/states.py); a ready symbol's tick
is scored, the others are answered as warming up. Ticks below a partition's warm-up mark
(replayed after an assignment) only rebuild feature state."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from confluent_kafka import KafkaError, Message

from consumer.batcher import Row
from consumer.config import ConsumerSettings
from consumer.messages import (
    BACKFILL_HEADER,
    BadTick,
    decode_tick,
    decode_tick_py,
    fast_decode,
    read_plain,
)
from consumer.metrics import ConsumerMetrics
from consumer.offsets import Offsets
from consumer.outputs import Outputs
from consumer.states import SymbolStates
from market.features import FEATURE_NAMES, N_FEATURES
from telemetry import names_gen as contract

logger = logging.getLogger("consumer.pipeline")  # one name for the consumer's log lines


@dataclass
class Rows:
    """One read: scored rows (``x``, one per ``meta``), warming-up ticks, and the order
    they arrived in (1 scored, 0 warming up)."""

    x: np.ndarray
    meta: list[Row]
    warming: list[Row] = field(default_factory=list)
    order: bytes = b""
    backfill: set[tuple[int, int]] = field(default_factory=set)  # (partition, offset)


class Intake:
    def __init__(
        self,
        settings: ConsumerSettings,
        states: SymbolStates,
        offsets: Offsets,
        outputs: Outputs,
        metrics: ConsumerMetrics,
        clock: Callable[[], int],
    ) -> None:
        self.s, self.states, self.offsets = settings, states, offsets
        self.outputs, self.metrics, self.clock = outputs, metrics, clock

    def read(self, msgs: list[Message]) -> Rows:
        now = self.clock()
        x = np.empty((len(msgs), N_FEATURES), dtype=np.float32)  # scored rows, in order
        meta: list[Row] = []
        warming: list[Row] = []
        order = bytearray()
        backfill: set[tuple[int, int]] = set()
        old = now - int(self.s.backfill_min_age_s * 1000)  # only older ticks may be backfill
        plain = (
            *(now, self.s.max_future_ms, old, self.offsets.warm_until, self.offsets.acks),
            *(self.states.states, self.states.max_window_ticks, x, meta, warming, order),
            *(backfill, BACKFILL_HEADER),
        )
        i, n = 0, len(msgs)
        while i < n:
            i = read_plain(msgs, i, *plain)  # C: the plain ticks from i on, as _one does
            if i < n:
                self._one(msgs[i], now, old, x, meta, warming, order, backfill)
                i += 1
        self.metrics.consumed.inc(len(msgs))
        self.metrics.warming_up.inc(len(warming))
        x = x[: len(meta)]
        if len(x) and np.isinf(x).any():  # a backstop: decode_tick's bounds keep features finite
            x, meta, order = self._drop_infinite(x, meta, order)
        return Rows(x, meta, warming, bytes(order), backfill)

    def _one(
        self,
        m: Message,
        now: int,
        old: int,
        x: np.ndarray,
        meta: list[Row],
        warming: list[Row],
        order: bytearray,
        backfill: set[tuple[int, int]],
    ) -> None:
        """One message: a consume error, a replayed tick (feature state only), a tick of a
        partition no longer ours (dropped), a bad tick (a dead letter), a tick of a flooded
        symbol (a dead letter), or a tick whose features go into row len(meta) of x."""
        err = m.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                self.metrics.errors.labels("kafka_consume").inc()
                logger.warning("consume error: %s", err)
            return
        p, off = m.partition(), m.offset()
        assert p is not None and off is not None  # None only on errored messages
        warm_until = self.offsets.warm_until
        warm = warm_until.get(p)
        if warm is not None:
            if off < warm:
                self._warm(p, m.value(), now)
                return
            del warm_until[p]
        acks = self.offsets.acks.get(p)
        if acks is None:  # partition no longer ours (revoked during this batch)
            return
        acks.track(off)
        raw = m.value()
        tick = fast_decode(raw, now, self.s.max_future_ms)  # C: a plain valid tick, else None
        if tick is None:
            try:
                tick = decode_tick_py(raw, now, self.s.max_future_ms)
            except BadTick as exc:
                self.outputs.dead_letter(m, str(exc), exc.kind)
                return
        st = self.states.get(p, tick.symbol)
        if self.states.flooded(st):
            reason = self.states.flood_reason(st)
            self.outputs.dead_letter_tick(p, off, tick, reason, contract.REASON_SYMBOL_FLOOD)
            return
        # features into the next free row: kept if the symbol is ready, else overwritten
        st.update_into(x, len(meta), *tick[1:])  # (event_time_ms, price, size, bid, ask)
        if tick.event_time_ms < old and BACKFILL_HEADER in (m.headers() or ()):
            backfill.add((p, off))  # headers are read for old ticks only
        if st.ready:
            meta.append((p, off, tick))
            order.append(1)
        else:
            warming.append((p, off, tick))
            order.append(0)

    def _drop_infinite(
        self, x: np.ndarray, meta: list[Row], order: bytearray
    ) -> tuple[np.ndarray, list[Row], bytearray]:
        """Dead-letter the ticks whose features overflow float32, so that one tick never
        makes the server reject its neighbours' batch."""
        bad = np.isinf(x).any(axis=1)
        for i in np.flatnonzero(bad):
            p, off, tick = meta[i]
            col = FEATURE_NAMES[int(np.flatnonzero(np.isinf(x[i]))[0])]
            reason = f"feature '{col}' of this tick overflows float32"
            self.outputs.dead_letter_tick(p, off, tick, reason, contract.REASON_FEATURE_OVERFLOW)
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
