"""Wire formats. Ticks in: JSON objects; predictions out: JSON objects; the reason a tick
cannot be used is one short sentence naming the field."""

from __future__ import annotations

import math
import time

import orjson

from market.ticks import Tick

MIN_TIME_MS = 946_684_800_000  # 2000-01-01: older event times are a unit mistake
MAX_FUTURE_MS = 86_400_000  # more than a day ahead of the wall clock is absurd


class BadTick(ValueError):
    """A tick that cannot be scored; ``str()`` is the dead-letter reason."""


def _number(obj: dict, name: str, optional: bool = False) -> float:
    if name not in obj or obj[name] is None:
        if optional:
            return math.nan
        raise BadTick(f"missing field '{name}'")
    v = obj[name]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadTick(f"field '{name}' must be a number, got {type(v).__name__}")
    return float(v)


def decode_tick(raw: bytes | None, now_ms: int) -> Tick:
    """Parse and validate one tick message; raises ``BadTick`` with the reason."""
    if raw is None:
        raise BadTick("empty message (null value)")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadTick(f"invalid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadTick(f"tick must be a JSON object, got {type(obj).__name__}")
    symbol = obj.get("symbol")
    if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
        raise BadTick("field 'symbol' must be a non-empty string of at most 32 characters")
    t = obj.get("event_time_ms")
    if t is None:
        raise BadTick("missing field 'event_time_ms'")
    if isinstance(t, bool) or not isinstance(t, int):
        raise BadTick(f"field 'event_time_ms' must be an integer, got {type(t).__name__}")
    if not MIN_TIME_MS <= t <= now_ms + MAX_FUTURE_MS:
        raise BadTick(f"field 'event_time_ms' {t} is not a plausible epoch time in ms")
    price = _number(obj, "price")
    size = _number(obj, "size")
    bid = _number(obj, "bid", optional=True)
    ask = _number(obj, "ask", optional=True)
    if not (math.isfinite(price) and price > 0):
        raise BadTick(f"field 'price' must be finite and > 0, got {price}")
    if not (math.isfinite(size) and size >= 0):
        raise BadTick(f"field 'size' must be finite and >= 0, got {size}")
    for name, v in (("bid", bid), ("ask", ask)):
        if not math.isnan(v) and not (math.isfinite(v) and v > 0):
            raise BadTick(f"field '{name}' must be finite and > 0 or null, got {v}")
    if bid > ask:
        raise BadTick(f"field 'bid' {bid} is above 'ask' {ask}")
    return Tick(symbol, t, price, size, bid, ask)


def now_ms_wall() -> int:
    return time.time_ns() // 1_000_000


def encode_row(symbol: str, t: int, price: float, size: float, bid: float, ask: float) -> bytes:
    return orjson.dumps(
        {
            "symbol": symbol,
            "event_time_ms": int(t),
            "price": price,
            "size": size,
            "bid": None if bid != bid else bid,
            "ask": None if ask != ask else ask,
        }
    )


def encode_tick(tick: Tick) -> bytes:
    return encode_row(tick.symbol, tick.event_time_ms, tick.price, tick.size, tick.bid, tick.ask)


def encode_prediction(
    tick: Tick,
    partition: int,
    offset: int,
    probability: float,
    label: bool,
    artifact: str,
    now_ms: int,
) -> bytes:
    return orjson.dumps(
        {
            "symbol": tick.symbol,
            "event_time_ms": tick.event_time_ms,
            "source_partition": partition,
            "source_offset": offset,
            "probability": probability,
            "label": label,
            "artifact": artifact,
            "latency_ms": now_ms - tick.event_time_ms,
        }
    )
