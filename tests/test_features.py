from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from market import features, realdata
from market.synthetic import SyntheticTicks


def incremental(ticks: pd.DataFrame) -> np.ndarray:
    states: dict[str, features.FeatureState] = {}
    rows = []
    cols = [ticks[c].tolist() for c in ("symbol", "event_time_ms", "price", "size", "bid", "ask")]
    for sym, t, p, z, b, a in zip(*cols, strict=True):
        st = states.get(sym)
        if st is None:
            st = states[sym] = features.FeatureState()
        rows.append(st.update(t, p, z, b, a))
    return np.array(rows, dtype=np.float64)


def assert_same(inc: np.ndarray, vec: np.ndarray) -> None:
    assert inc.shape == vec.shape
    np.testing.assert_array_equal(np.isnan(inc), np.isnan(vec))
    for j, name in enumerate(features.FEATURE_NAMES):
        np.testing.assert_allclose(inc[:, j], vec[:, j], rtol=1e-9, atol=1e-12, err_msg=name)


def test_incremental_equals_vectorised_on_all_real_ticks():
    ticks = realdata.load()
    assert len(ticks) == 500_000
    vec = features.compute_frame(ticks).to_numpy()
    assert_same(incremental(ticks), vec)
    # the real data has genuine history: windows fill, volatility is not all zero
    assert np.nanmax(vec[:, features.FEATURE_NAMES.index("rv_60s")]) > 1e-3
    assert np.isnan(vec[:, features.FEATURE_NAMES.index("spread")]).all()  # no quotes


def test_incremental_equals_vectorised_on_interleaved_synthetic_symbols():
    ticks = SyntheticTicks(seed=3).frame(40_000)
    vec = features.compute_frame(ticks).to_numpy()
    assert_same(incremental(ticks), vec)
    spread_bps = vec[:, features.FEATURE_NAMES.index("spread_bps")]
    assert np.all(spread_bps > 0)


def test_hand_computed_window_values():
    st = features.FeatureState()
    st.update(0, 100.0, 1.0)
    st.update(500, 101.0, 2.0)
    out = dict(zip(features.FEATURE_NAMES, st.update(1_500, 99.0, 3.0), strict=True))
    assert out["ret_1s"] == pytest.approx(math.log(99 / 101))  # last trade at or before t-1s
    assert math.isnan(out["ret_5s"])  # not 5 s of history yet
    r2 = math.log(101 / 100) ** 2 + math.log(99 / 101) ** 2
    assert out["rv_30s"] == pytest.approx(math.sqrt(r2))
    assert out["trades_per_s_60s"] == pytest.approx(3 / 60)
    assert out["volume_per_s_60s"] == pytest.approx(6 / 60)
    assert math.isnan(out["spread"]) and math.isnan(out["spread_bps"])
    late = dict(zip(features.FEATURE_NAMES, st.update(61_000, 99.0, 1.0, 98.0, 100.0), strict=True))
    assert late["trades_per_s_60s"] == pytest.approx(2 / 60)  # only 1 500 and 61 000 remain
    assert late["rv_30s"] == 0.0  # no price change inside the last 30 s: exactly zero
    assert late["spread"] == 2.0 and late["spread_bps"] == pytest.approx(2 / 99 * 1e4)


def test_late_tick_does_not_rewind_windows():
    st = features.FeatureState()
    st.update(10_000, 100.0, 1.0)
    late = st.update(5_000, 100.5, 1.0)  # older than the last tick: clamped to 10 000
    ticks = pd.DataFrame(
        {
            "symbol": "X",
            "event_time_ms": [10_000, 5_000],
            "price": [100.0, 100.5],
            "size": 1.0,
            "bid": np.nan,
            "ask": np.nan,
        }
    )
    np.testing.assert_allclose(late, features.compute_frame(ticks).to_numpy()[1], equal_nan=True)


def test_synthetic_stream_is_seeded_and_realistic():
    a = SyntheticTicks(seed=11).frame(30_000)
    b = SyntheticTicks(seed=11).frame(30_000)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(SyntheticTicks(seed=12).frame(30_000))
    assert a["event_time_ms"].is_monotonic_increasing
    assert set(a["symbol"]) == {"BTC-USD", "ETH-USD", "SOL-USD", "DOGE-USD"}
    assert (a["bid"] < a["ask"]).all() and (a["size"] > 0).all()
    chunks = list(SyntheticTicks(seed=11).frames(25_000, chunk=10_000))
    assert [len(c) for c in chunks] == [10_000, 10_000, 5_000]
    # chunk by chunk: the concatenated chunks are the one big frame, row for row
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), a.iloc[:25_000])
    odd = list(SyntheticTicks(seed=11).frames(30_000, chunk=7_777))
    pd.testing.assert_frame_equal(pd.concat(odd, ignore_index=True), a)


def test_synthetic_regimes_are_in_event_time():
    rate = 20.0
    gen = SyntheticTicks(seed=5, rate_per_s=rate, calm_s=60, stressed_s=20)
    ticks = gen.frame(400_000)
    t = ticks["event_time_ms"].to_numpy()
    seconds = (t[-1] - t[0]) / 1000
    stressed = ticks["stressed"].to_numpy()
    # stressed trades arrive stress_rate (2x) faster: ~ a third of the ticks in ~ a quarter
    # of the time; the mean calm rate is rate_per_s whatever the regime lengths
    calm_s = seconds * (1 - stressed.mean()) / (1 - stressed.mean() + stressed.mean() / 2)
    assert (~stressed).sum() / calm_s == pytest.approx(rate, rel=0.05)
    assert 0.2 < stressed.mean() < 0.5
    # regime runs last seconds of event time (geometric, means 60 s and 20 s)
    flips = np.flatnonzero(np.diff(stressed.astype(np.int8))) + 1
    starts, ends = t[np.r_[0, flips]], t[np.r_[flips - 1, len(t) - 1]]
    runs_s = (ends - starts)[1:-1] / 1000
    was_stressed = stressed[np.r_[0, flips]][1:-1]
    assert np.mean(runs_s[~was_stressed]) == pytest.approx(60, rel=0.25)
    assert np.mean(runs_s[was_stressed]) == pytest.approx(20, rel=0.25)


def test_synthetic_regimes_switch_volatility():
    ticks = SyntheticTicks(seed=5, calm_s=100, stressed_s=40).frame(200_000)
    rv = features.compute_frame(ticks)["rv_60s"].to_numpy()
    btc = (ticks["symbol"] == "BTC-USD").to_numpy()
    lo, hi = np.quantile(rv[btc], [0.1, 0.9])
    assert hi > 2.5 * lo  # calm and stressed stretches both occur
    stressed = ticks["stressed"].to_numpy()[btc]
    assert np.median(rv[btc][stressed]) > 1.5 * np.median(rv[btc][~stressed])
