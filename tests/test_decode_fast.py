"""The C fast path of the tick decoder (consumer/_wire.c) against the Python reference:
for every message, ``decode_tick`` (C, falling back to Python) gives the same tick or the
same dead-letter reason as ``decode_tick_py``; and the plain ticks the consumer reads do
take the C path (else the speed-up is gone without a failure)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumer import messages
from consumer.messages import BadTick, decode_tick, decode_tick_py, encode_row, fast_decode

NOW = 1_764_000_000_000


def test_the_consumer_gets_the_c_decoder():
    """`make models` builds consumer/_wire (make test and make test-fast both run it): the
    Python-only fallback is for a fresh clone before the build, never for the suite."""
    assert fast_decode is not messages._no_fast_path
    assert fast_decode.__module__ == "consumer._wire"


def outcome(f, raw, now=NOW, future=5_000):
    try:
        t = f(raw, now, future)
    except BadTick as exc:
        return ("bad", str(exc), exc.kind)
    # NaN != NaN: compare the fields' reprs and types
    return ("tick", type(t).__name__, tuple((type(v).__name__, repr(v)) for v in t))


def same(raw, now=NOW, future=5_000) -> None:
    assert outcome(decode_tick, raw, now, future) == outcome(decode_tick_py, raw, now, future), raw


def test_plain_ticks_take_the_c_path_and_match_python():
    for raw in (
        encode_row("BTC-USD", NOW - 10, 101.25, 0.5, 101.2, 101.3),
        encode_row("X", NOW + 5_000, 1e-12, 0.0, float("nan"), float("nan")),
        b'{"symbol": "ETH", "event_time_ms": 1764000000000, "price": 3, "size": 1e2}',
        b' {"price":1E-3,"size":0,"symbol":"a","event_time_ms":1764000000000} \n',
        b'{"symbol":"A","event_time_ms":1764000000000,"price":2.5,"size":1,"venue":"x",'
        b'"n":null,"ok":true,"q":-0.5e-3}',
    ):
        assert fast_decode(raw, NOW, 5_000) is not None, raw
        same(raw)


HOSTILE = [
    None,
    b"",
    b"null",
    b"[]",
    b"{}",
    b"{",
    b'{"symbol":"A"}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1}x',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1,}',
    b'{"symbol":"A","event_time_ms":1764000000000.0,"price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":1.764e12,"price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":"1764000000000","price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":true,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":null,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":NaN,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":1e400,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":1e-400,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":01,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":-,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":1.,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1,"bid":3,"ask":2}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1,"bid":0,"ask":2}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":-0.0}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1e13}',
    b'{"symbol":"","event_time_ms":1764000000000,"price":2,"size":1}',
    b'{"symbol":"' + b"S" * 33 + b'","event_time_ms":1764000000000,"price":2,"size":1}',
    b'{"symbol":"' + b"S" * 32 + b'","event_time_ms":1764000000000,"price":2,"size":1}',
    '{"symbol":"\u00e9","event_time_ms":1764000000000,"price":2,"size":1}'.encode(),
    b'{"symbol":"\\u0041","event_time_ms":1764000000000,"price":2,"size":1}',
    b'{"symbol":"A\\"","event_time_ms":1764000000000,"price":2,"size":1}',
    b'{"symbol":"A","symbol":"B","event_time_ms":1764000000000,"price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"price":3,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1,"x":{"y":1}}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1,"bid":1,"bid":null}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":18446744073709551716,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1,"x":"\xff"}',
    b'{"symbol":"A","event_time_ms":946684799999,"price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000005001,"price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":-1764000000000,"price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":99999999999999999999999,"price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":123456789012345678901,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1}' + b" " * 20_000,
    b'\xef\xbb\xbf{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1}',
    b'{"symbol":"A","event_time_ms":1764000000000,"price":2,"size":1}\x00',
    b'{"symbol":"A"\t,\n"event_time_ms"\r:1764000000000,"price":2,"size":1\n}',
]


@pytest.mark.parametrize("raw", HOSTILE)
def test_hostile_messages_get_pythons_answer(raw):
    same(raw)


def test_odd_clock_arguments_fall_back_or_match():
    raw = encode_row("A", NOW, 2.0, 1.0, float("nan"), float("nan"))
    odd = [(NOW, 0), (NOW - 1, 0), (NOW, 2**50), (-1, 5_000), (2**61, 5_000), (2**63, 0)]
    odd += [(NOW, -(2**64)), (float(NOW), 5_000), (NOW, 5_000.0), (2**70, 0)]
    for now, future in odd:
        for msg in (raw, b"u", b"{}", b"x" * 20_000):
            same(msg, now, future)


numbers = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(min_value=1e-13, max_value=2e9),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, -0.0, 1e-12, 1e9, 1e12, 1e9 * (1 + 2**-52), 5e-324]),
)
values = st.one_of(numbers, st.none(), st.booleans(), st.text(max_size=40))


@st.composite
def messages_(draw):
    obj = {}
    for name in ("symbol", "event_time_ms", "price", "size", "bid", "ask"):
        if draw(st.integers(0, 9)) == 0:
            continue  # missing
        if name == "symbol":
            obj[name] = draw(st.one_of(st.text(max_size=34), values))
        elif name == "event_time_ms":
            obj[name] = draw(
                st.one_of(st.integers(NOW - 10**12, NOW + 10_000), st.integers(), values)
            )
        else:
            obj[name] = draw(values)
    if draw(st.booleans()):
        obj[draw(st.text(max_size=8))] = draw(values)
    seps = draw(st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", "\t:\r")]))
    return json.dumps(obj, ensure_ascii=draw(st.booleans()), separators=seps).encode()


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages_())
def test_generated_messages_agree(raw):
    same(raw)


@settings(max_examples=2000, deadline=None)
@given(st.floats(min_value=1e-12, max_value=1e9), st.integers(1, 25), st.booleans())
def test_decimal_texts_parse_to_the_same_double(x, digits, exp):
    """Numbers written with many digits (and as exponents) round to the same double."""
    text = f"{x:.{digits}e}" if exp else f"{x:.{digits}f}"
    raw = b'{"symbol":"A","event_time_ms":1764000000000,"price":' + text.encode() + b',"size":1}'
    same(raw)
    if math.isfinite(float(text)) and 1e-12 <= float(text) <= 1e9:
        assert fast_decode(raw, NOW, 5_000) is not None


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, 2**53 + 2), st.integers(-26, 12), st.sampled_from(["e", "E", "f"]))
def test_the_exact_fast_path_rounds_like_python(m, k, form):
    """An integer of up to 16 digits times 10^k (the C decoder's shortcut: one exact
    multiply or divide) reads as the same double as Python's parser, as a size (<= 1e12)."""
    k = min(k, 12 - len(str(m)))  # keep it a valid size, so the C path is taken
    if form == "f":
        text = f"{m}.{'0' * 3}" if k >= 0 else f"{m // 10**-k}.{m % 10**-k:0{-k}d}"
    else:
        text = f"{m}.0{form}{k:+d}"
    raw = b'{"symbol":"A","event_time_ms":1764000000000,"price":1,"size":' + text.encode() + b"}"
    same(raw)
    assert fast_decode(raw, NOW, 5_000) is not None, raw
