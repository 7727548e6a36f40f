"""The one tick schema used by the real data, the synthetic generator and the stream."""

from __future__ import annotations

from typing import NamedTuple

TICK_COLUMNS = ("symbol", "event_time_ms", "price", "size", "bid", "ask")


class Tick(NamedTuple):
    """One trade. ``bid``/``ask`` are NaN when the source carries no quote. A NamedTuple:
    immutable, and built in C by the consumer's decoder (consumer/_wire.c)."""

    symbol: str
    event_time_ms: int  # milliseconds since the Unix epoch, UTC
    price: float
    size: float
    bid: float = float("nan")
    ask: float = float("nan")
