"""Tick validation against the feature code: whatever passes the bounds must be scorable."""

from __future__ import annotations

import json
import math
import re
import time

import numpy as np
import pytest

from consumer.messages import MAX_PRICE, MIN_PRICE, BadTick, decode_tick
from market.features import WARMUP_MS, FeatureState


def tick(**kw) -> bytes:
    now = int(time.time() * 1000)
    return json.dumps(
        {"symbol": "A", "event_time_ms": now, "price": 100.0, "size": 1, **kw}
    ).encode()


@pytest.mark.parametrize(
    ("fields", "kind", "text"),
    [
        ({"price": 1e-323}, "price", "field 'price' must be >= 1e-12"),  # subnormal
        ({"price": 0.0}, "price", "field 'price' must be >= 1e-12"),
        ({"price": 1e10}, "price", "<= 1e+09"),
        ({"bid": 1e-300, "ask": 1.0}, "bid_ask", "field 'bid' must be >= 1e-12"),
        ({"size": -1}, "size", "field 'size' must be >= 0"),
    ],
)
def test_out_of_range_prices_are_refused_with_the_field_named(fields, kind, text):
    now = int(time.time() * 1000)
    with pytest.raises(BadTick, match=re.escape(text)) as exc:
        decode_tick(tick(**fields), now)
    assert exc.value.kind == kind


def test_the_extreme_prices_that_pass_give_finite_features():
    """Before the lower bound a price of 1e-323 after 100 made math.log raise inside
    FeatureState.update: the consumer died on that tick and again at every restart."""
    now = int(time.time() * 1000)
    st = FeatureState()
    rows = []
    for i in range(WARMUP_MS // 1000 + 20):
        price = (MIN_PRICE, MAX_PRICE)[i % 2]
        t = decode_tick(tick(price=price, event_time_ms=now - 400_000 + i * 1000), now)
        rows.append(st.update(t.event_time_ms, t.price, t.size, t.bid, t.ask))
    x = np.array(rows, np.float64)
    assert st.ready
    assert np.isfinite(x[np.isfinite(x) | ~np.isnan(x)]).all()  # NaN (missing) is allowed
    assert np.isfinite(x.astype(np.float32)[~np.isnan(x)]).all()  # and nothing overflows f32
    assert not math.isnan(x[-1][0])
