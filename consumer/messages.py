"""Wire formats. Ticks in: JSON objects; predictions out: JSON objects; the reason a tick
cannot be used is one short sentence naming the field."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import orjson

from market.ticks import Tick
from telemetry import names_gen as names

MIN_TIME_MS = 946_684_800_000  # 2000-01-01: older event times are a unit mistake
MAX_FUTURE_MS = 5_000
"""How far ahead of the consumer's clock an event time may be (producers' clock skew).
A tick from the future would hold its symbol's windows at that time (later ticks count
as arriving then) and would end up in the commit metadata the warm-up starts from."""
BACKFILL_HEADER = ("backfill", b"1")
"""A Kafka header a producer sets on history it sends to warm symbols (``tools/replay.py
--history-seconds``): such a tick is answered as any other, but kept out of the freshness
SLI's histogram and counted on its own, if it is old enough when read (ConsumerSettings
backfill_min_age_s, 20 s): marking a tick read younger changes nothing."""
MAX_MESSAGE_BYTES = 16_384  # a tick is ~120 bytes; larger messages are not parsed
MIN_PRICE, MAX_PRICE = 1e-12, 1e9  # price, bid and ask: [MIN_PRICE, MAX_PRICE]
MAX_SIZE = 1e12  # size: [0, MAX_SIZE]
"""Bounds that keep every feature finite: a log return is at most |ln(1e21)| ~ 48, so no
ratio of prices underflows to 0 (a subnormal price made math.log raise and the consumer
die on that tick at every restart) or overflows. They do not make the running float64
sums exact: after a 1e12 lot leaves a window, lots twelve orders of magnitude smaller can
read as zero volume until the window has turned over (docs/pipeline.md, limits)."""


REASONS = names.TICK_REASONS
"""The closed set of ``reason`` label values of the dead-letter counter for bad ticks
(proto/contract.toml [consumer.tick_reasons])."""
PIPELINE_REASONS = names.PIPELINE_REASONS
"""Dead-letter reasons of a good tick the pipeline could not answer (proto/contract.toml
[consumer.pipeline_reasons]): its symbol already holds max_window_ticks ticks in its 300 s
window (late ticks pile up at a standing clock), its features overflow float32, the server
refused its batch, the server's answer was malformed (wrong length, a probability outside
[0, 1]) after retries, the server's model lists other features than this consumer computes,
ModelInfo could not confirm the model's features within schema_wait_s, or the answer could
not be written."""


class BadTick(ValueError):
    """A tick that cannot be scored; ``str()`` is the dead-letter reason, ``kind`` its
    label (one of ``REASONS``)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def _number(obj: dict, name: str, optional: bool = False) -> float:
    if name not in obj or obj[name] is None:
        if optional:
            return math.nan
        raise BadTick(f"missing field '{name}'", names.REASON_MISSING_FIELD)
    v = obj[name]
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise BadTick(
            f"field '{name}' must be a number, got {type(v).__name__}", names.REASON_WRONG_TYPE
        )
    return float(v)


def _no_fast_path(raw: bytes | None, now_ms: int, max_future_ms: int) -> Tick | None:
    return None


def _no_plain_path(msgs: list, i: int, *_: object) -> int:
    return i


fast_decode: Callable[[bytes | None, int, int], Tick | None] = _no_fast_path
read_plain: Callable[..., int] = _no_plain_path
try:  # the C fast paths; `make models` builds them (compiled_models/build_fastcall.py)
    from consumer import _wire
except ImportError:  # not built yet: every message takes the Python path
    pass
else:
    _wire.configure(Tick, MIN_TIME_MS, MAX_MESSAGE_BYTES, MIN_PRICE, MAX_PRICE, MAX_SIZE)
    fast_decode, read_plain = _wire.decode, _wire.read_plain
"""``fast_decode(raw, now_ms, max_future_ms)``: the tick of a plain valid message (C,
consumer/_wire.c), or None when ``decode_tick_py`` must judge it (any message that is
not plain, and every bad one). Never a different tick than ``decode_tick_py`` gives."""
# ``read_plain(msgs, i, ...)``: consumer/intake.py's loop over plain ticks in C
# (consumer/_intake.h); the index of the first message Intake._one must take.


def decode_tick(raw: bytes | None, now_ms: int, max_future_ms: int = MAX_FUTURE_MS) -> Tick:
    """Parse and validate one tick message; raises ``BadTick`` with the reason."""
    tick = fast_decode(raw, now_ms, max_future_ms)
    return decode_tick_py(raw, now_ms, max_future_ms) if tick is None else tick


def decode_tick_py(raw: bytes | None, now_ms: int, max_future_ms: int = MAX_FUTURE_MS) -> Tick:
    """``decode_tick`` in Python: the reference, and the words of every dead letter."""
    if raw is None:
        raise BadTick("empty message (null value)", names.REASON_NULL)
    if len(raw) > MAX_MESSAGE_BYTES:
        raise BadTick(
            f"message is {len(raw)} bytes; a tick is at most {MAX_MESSAGE_BYTES}",
            names.REASON_TOO_LARGE,
        )
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadTick(f"invalid JSON: {exc}", names.REASON_INVALID_JSON) from None
    if not isinstance(obj, dict):
        raise BadTick(
            f"tick must be a JSON object, got {type(obj).__name__}", names.REASON_NOT_OBJECT
        )
    symbol = obj.get("symbol")
    if not isinstance(symbol, str) or not symbol or len(symbol) > 32:
        raise BadTick(
            "field 'symbol' must be a non-empty string of at most 32 characters",
            names.REASON_SYMBOL,
        )
    t = obj.get("event_time_ms")
    if t is None:
        raise BadTick("missing field 'event_time_ms'", names.REASON_MISSING_FIELD)
    if isinstance(t, bool) or not isinstance(t, int):
        raise BadTick(
            f"field 'event_time_ms' must be an integer, got {type(t).__name__}",
            names.REASON_WRONG_TYPE,
        )
    if t < MIN_TIME_MS:
        raise BadTick(
            f"field 'event_time_ms' {t} is not a plausible epoch time in ms",
            names.REASON_EVENT_TIME,
        )
    if t > now_ms + max_future_ms:
        raise BadTick(
            f"field 'event_time_ms' {t} is {t - now_ms} ms ahead of the consumer's clock "
            f"(at most {max_future_ms})",
            names.REASON_FUTURE_TIME,
        )
    price = _number(obj, "price")
    size = _number(obj, "size")
    bid = _number(obj, "bid", optional=True)
    ask = _number(obj, "ask", optional=True)
    if not MIN_PRICE <= price <= MAX_PRICE:  # NaN and inf fail too
        raise BadTick(
            f"field 'price' must be >= {MIN_PRICE:g} and <= {MAX_PRICE:g}, got {price}",
            names.REASON_PRICE,
        )
    if not 0 <= size <= MAX_SIZE:
        raise BadTick(
            f"field 'size' must be >= 0 and <= {MAX_SIZE:g}, got {size}", names.REASON_SIZE
        )
    for name, v in (("bid", bid), ("ask", ask)):
        if not math.isnan(v) and not MIN_PRICE <= v <= MAX_PRICE:
            raise BadTick(
                f"field '{name}' must be >= {MIN_PRICE:g} and <= {MAX_PRICE:g} or null, got {v}",
                names.REASON_BID_ASK,
            )
    if bid > ask:
        raise BadTick(f"field 'bid' {bid} is above 'ask' {ask}", names.REASON_BID_ASK)
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
    probability: float | None,
    label: bool | None,
    artifact: str | None,
    now_ms: int,
) -> bytes:
    """A scored tick, or (probability, label and artifact None) a tick of a symbol that is
    still warming up: too little history for its features to mean anything."""
    return orjson.dumps(
        {
            "symbol": tick.symbol,
            "event_time_ms": tick.event_time_ms,
            "source_partition": partition,
            "source_offset": offset,
            "warming_up": probability is None,
            "probability": probability,
            "label": label,
            "artifact": artifact,
            "latency_ms": now_ms - tick.event_time_ms,
        }
    )
