"""The one tick schema used by the real data, the synthetic generator and the stream."""

from __future__ import annotations

from dataclasses import dataclass

TICK_COLUMNS = ("symbol", "event_time_ms", "price", "size", "bid", "ask")


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade. ``bid``/``ask`` are NaN when the source carries no quote."""

    symbol: str
    event_time_ms: int  # milliseconds since the Unix epoch, UTC
    price: float
    size: float
    bid: float = float("nan")
    ask: float = float("nan")
