from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from market import features, realdata
from market.synthetic import SyntheticTicks


def incremental(ticks: pd.DataFrame, state=features.FeatureState) -> tuple[np.ndarray, np.ndarray]:
    states: dict = {}
    rows, ready = [], []
    cols = [ticks[c].tolist() for c in ("symbol", "event_time_ms", "price", "size", "bid", "ask")]
    for sym, t, p, z, b, a in zip(*cols, strict=True):
        st = states.get(sym)
        if st is None:
            st = states[sym] = state()
        rows.append(st.update(t, p, z, b, a))
        ready.append(st.ready)
    return np.array(rows, dtype=np.float64), np.array(ready)


def assert_same(ticks: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The C streaming state equals the Python reference bit for bit, and both equal the
    vectorised (training) path within rounding. (Mutation: change one operation's order
    in market/_featurestate.c, e.g. ret1 * (iv * K1), and the bitwise check fails.)"""
    frame, ready = features.compute(ticks)
    vec = frame.to_numpy()
    inc, inc_ready = incremental(ticks)
    ref, ref_ready = incremental(ticks, features.PyFeatureState)
    np.testing.assert_array_equal(inc_ready, ref_ready)
    assert inc.tobytes() == ref.tobytes(), "the C port and the Python reference differ"
    assert inc.shape == vec.shape
    np.testing.assert_array_equal(inc_ready, ready)
    np.testing.assert_array_equal(np.isnan(inc), np.isnan(vec))
    for j, name in enumerate(features.FEATURE_NAMES):
        # running sums against pandas' rolling sums: rounding differs in the last bits
        np.testing.assert_allclose(inc[:, j], vec[:, j], rtol=1e-8, atol=1e-9, err_msg=name)
    return vec, ready


def col(x: np.ndarray, name: str) -> np.ndarray:
    return x[:, features.FEATURE_NAMES.index(name)]


def test_the_consumer_gets_the_c_port():
    """`make models` built market/_featurestate: the fallback to the reference is for a
    fresh clone before the build, never for the suite (or the consumer it tests)."""
    assert features.FeatureState is not features.PyFeatureState
    assert features.FeatureState.__module__ == "market._featurestate"


def test_the_c_port_raises_as_the_reference_does():
    for state in (features.FeatureState, features.PyFeatureState):
        st = state()
        st.update(0, 100.0, 1.0)
        with pytest.raises(ValueError, match="math domain error"):
            st.update(1_000, -1.0, 1.0)
        with pytest.raises(ZeroDivisionError):
            st.update(2_000, 100.0, 1.0, 0.0, 0.0)
    # far-apart times (int64 in C): a gap restarts the history in both, nothing overflows
    for far in ([(2**63 - 1, 100.0)], [(0, 100.0), (2**62, 101.0), (2**63 - 1, 102.0)]):
        c, ref = features.FeatureState(), features.PyFeatureState()
        for t, p in [*far, (-(2**62), 103.0)]:
            assert np.array_equal(c.update(t, p, 1.0), ref.update(t, p, 1.0), equal_nan=True)
            assert c.ready == ref.ready, t


@pytest.mark.parametrize("state", [features.FeatureState, features.PyFeatureState])
def test_update_into_writes_the_float32_cast_of_update(state):
    """The consumer's path (``update_into``, a float32 row per tick) gives the bytes numpy
    makes of ``update``'s list, NaN included, on real ticks with quotes and without; a bad
    buffer or row is refused before the state changes."""
    ticks = realdata.load().head(20_000)
    cols = [ticks[c].tolist() for c in ("event_time_ms", "price", "size", "bid", "ask")]
    a, b = state(), state()
    x = np.full((len(ticks), features.N_FEATURES), 7.0, dtype=np.float32)
    rows = []
    for i, (t, p, z, bid, ask) in enumerate(zip(*cols, strict=True)):
        rows.append(a.update(t, p, z, bid, ask) if i % 3 else a.update(t, p, z))
        b.update_into(x, i, t, p, z, bid, ask) if i % 3 else b.update_into(x, i, t, p, z)
    want = np.array(rows, dtype=np.float32)
    assert np.isnan(want).any() and np.isfinite(want).any()
    assert x.tobytes() == want.tobytes()
    held = b.held
    for bad, i in (
        (np.zeros((2, features.N_FEATURES), np.float64), 0),
        (np.zeros((2, features.N_FEATURES), np.float32), 2),
        (np.zeros((2, features.N_FEATURES), np.float32), -1),
    ):
        with pytest.raises(ValueError, match="update_into"):
            b.update_into(bad, i, 10**13, 100.0, 1.0)
    assert b.held == held


def test_a_raising_tick_changes_nothing_in_either():
    """The spread is computed before a gap resets the history: a tick that raises there
    leaves the state as it was (the C port used to report ready=True on the next tick)."""
    for state in (features.FeatureState, features.PyFeatureState):
        st = state()
        st.update(1_000_000, 100.0, 1.0)
        with pytest.raises(ZeroDivisionError):
            st.update(1_400_000, 100.0, 1.0, 0.0, 0.0)
        st.update(1_100_000, 100.0, 1.0)
        assert not st.ready, state
    first = features.FeatureState()
    first.update(-(2**62), 1.0, 1.0)  # at the "no tick yet" sentinel
    assert not first.ready
    bare = features.FeatureState.__new__(features.FeatureState)  # usable without __init__
    assert bare.update(0, 100.0, 1.0)[6] == 5.0


def test_the_c_buffer_gives_memory_back_after_a_burst():
    """A burst of 400,000 ticks inside 300 s grows the buffer; once the window has moved on
    (compaction) it shrinks again, as the reference's list does. (Mutation: drop the
    fs_shrink call after compaction and this fails.)"""
    import tracemalloc

    st = features.FeatureState()
    tracemalloc.start()
    try:
        for i in range(400_000):
            st.update(i // 2, 100.0 + (i % 7), 1.0)
        peak = tracemalloc.get_traced_memory()[0]
        for i in range(4_000):  # 400 s more at 10 ticks/s, no gap: the burst leaves the window
            st.update(200_000 + i * 100, 100.0, 1.0)
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert peak > 10_000_000 and after < peak / 10, (peak, after)


def test_the_c_max_queue_gives_memory_back_when_a_large_move_empties_it():
    """A burst of falling one-tick moves fills the 60 s maximum's queue; one larger move pops
    it back to a single entry. The queue's memory must follow (found by review: it stayed
    allocated, 4 MB per symbol here, until the next gap; mutation: drop the mx_shrink call
    after the push and this fails)."""
    import tracemalloc

    tracemalloc.start()
    try:
        st = features.FeatureState()
        base = tracemalloc.get_traced_memory()[0]
        p = 1.0
        st.update(0, p, 1.0)
        for i in range(150_000):
            p *= math.exp(1e-3 / (i + 1))
            st.update(1 + i // 1_000, p, 1.0)
        st.update(2_000, p * 1.5, 1.0)
        t = 2_000
        for k in range(400):
            t += 1_000
            st.update(t, p * (1.5 if k % 2 else 1.5000001), 1.0)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held < 1_000_000, held  # the tick buffer of 300 s at 1/s, not the burst's queue


def test_incremental_equals_vectorised_on_all_real_ticks():
    ticks = realdata.load()
    assert len(ticks) == 500_000
    vec, ready = assert_same(ticks)
    # warm-up: the first 300 s and 300 s after the overnight break are not ready
    t = ticks["event_time_ms"].to_numpy()
    assert not ready[t < t[0] + features.WARMUP_MS].any()
    assert 0.98 < ready.mean() < 1.0
    gap = int(np.argmax(np.diff(t))) + 1  # the session break
    assert np.diff(t).max() > features.WARMUP_MS and not ready[gap]
    # scale-free: the levels sit near 1, whatever the instrument's price or volume
    for name in ("rv_60s_rel", "trades_rel_60s", "volume_rel_60s"):
        assert 0.8 < np.nanmedian(col(vec, name)[ready]) < 1.2, name
    assert np.isnan(col(vec, "spread_bps_rel")).all()  # no quotes in the E-mini data


def test_incremental_equals_vectorised_on_interleaved_synthetic_symbols():
    ticks = SyntheticTicks(seed=3).frame(40_000)
    vec, ready = assert_same(ticks)
    assert ready.any() and not ready.all()
    assert np.all(col(vec, "spread_bps_rel")[ready] > 0)


def test_features_do_not_depend_on_price_or_volume_scale():
    ticks = SyntheticTicks(seed=4).frame(30_000)
    scaled = ticks.assign(
        price=ticks["price"] * 1000.0,
        bid=ticks["bid"] * 1000.0,
        ask=ticks["ask"] * 1000.0,
        size=ticks["size"] * 0.01,
    )
    a, ra = features.compute(ticks)
    b, rb = features.compute(scaled)
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-6, atol=1e-9)


def test_hand_computed_window_values():
    st = features.FeatureState()
    st.update(0, 100.0, 1.0)
    st.update(100_000, 101.0, 2.0)
    st.update(299_000, 100.0, 1.0)
    assert not st.ready
    out = dict(zip(features.FEATURE_NAMES, st.update(300_000, 99.0, 3.0), strict=True))
    assert st.ready  # 300 s since the symbol's first tick
    r = [math.log(101 / 100), math.log(100 / 101), math.log(99 / 100)]
    v300 = sum(x * x for x in r)  # (0, 300 000]: the tick at 0 (return 0) has left
    assert out["ret_1s_z"] == pytest.approx(math.log(99 / 100) / math.sqrt(v300 / 300))
    assert out["ret_60s_z"] == pytest.approx(math.log(99 / 101) / math.sqrt(v300 / 5))
    assert out["rv_60s_rel"] == pytest.approx(math.sqrt(5 * (r[1] ** 2 + r[2] ** 2) / v300))
    assert out["rv_ratio_30_60"] == pytest.approx(math.sqrt(2))  # both moves inside 30 s
    assert out["trades_rel_60s"] == pytest.approx(5 * 2 / 3)
    assert out["volume_rel_60s"] == pytest.approx(5 * 4 / 6)
    assert math.isnan(out["spread_bps_rel"])
    quoted = dict(
        zip(features.FEATURE_NAMES, st.update(300_500, 99.0, 1.0, 98.0, 100.0), strict=True)
    )
    assert quoted["spread_bps_rel"] == 1.0  # the only quote in the window is its own mean


@pytest.mark.parametrize("state", [features.FeatureState, features.PyFeatureState])
def test_the_jump_and_burst_features_by_hand(state):
    """A steady symbol (1 tick/s, +/-0.01 % moves, a 2 bps spread) takes one 1 % jump: the
    jump share and the largest-move feature light up for exactly 60 s (right-closed
    windows), then read the steady values again; a trade burst and a wider spread show
    in the 10 s features. Expected values come from plain sums over each window.
    (Mutations seen failing: the 60 s maximum never expiring; the bipower term taking
    |r|^2 instead of |r| |previous r|.)"""
    st = state()
    hist: list[tuple[int, float]] = []  # (t, r) of every tick
    quotes: list[tuple[int, float]] = []  # (t, spread in bps)
    price = 100.0

    def tick(t: int, r: float, spread: float = 0.02) -> dict[str, float]:
        nonlocal price
        new = price * math.exp(r)
        r = math.log(new / price) if hist else 0.0
        price = new
        hist.append((t, r))
        quotes.append((t, spread / price * 1e4))
        out = st.update(t, price, 1.0, price - spread / 2, price + spread / 2)
        return dict(zip(features.FEATURE_NAMES, out, strict=True))

    def inside(t: int, w: int) -> list[float]:
        return [r for u, r in hist if t - w < u <= t]

    for i in range(400):
        tick(i * 1_000, 1e-4 if i % 2 else -1e-4)
    at = tick(400_000, 0.01)
    assert st.ready
    v300 = sum(r * r for r in inside(400_000, 300_000))
    rs = [r for _, r in hist]
    bip = sum(abs(a) * abs(b) for a, b in zip(rs[-60:], rs[-61:-1], strict=True))
    rv60 = sum(r * r for r in inside(400_000, 60_000))
    assert at["jump_share_60s"] == pytest.approx(1 - math.pi / 2 * bip / rv60, rel=1e-9)
    assert at["jump_share_60s"] > 0.9
    assert at["absret_max_60s_z"] == pytest.approx(0.01 / math.sqrt(v300 / 300), rel=1e-9)
    rv5 = sum(r * r for r in inside(400_000, 5_000))
    assert at["rv_5s_rel"] == pytest.approx(math.sqrt(60 * rv5 / v300), rel=1e-9)
    assert at["trades_rel_10s"] == pytest.approx(30 * 10 / 300)
    for s in range(1, 61):  # steady again; the jump is inside (t - 60 s, t] until s = 60
        out = tick(400_000 + s * 1_000, 1e-4 if s % 2 else -1e-4)
        if s < 60:
            assert out["absret_max_60s_z"] > 10 and out["jump_share_60s"] > 0.5, s
    v300 = sum(r * r for r in inside(460_000, 300_000))
    assert out["absret_max_60s_z"] == pytest.approx(1e-4 / math.sqrt(v300 / 300), rel=1e-6)
    assert out["jump_share_60s"] == 0.0  # equal moves: bipower exceeds RV, clipped
    # a burst of 20 trades inside one second, at a spread three times as wide
    for k in range(20):
        out = tick(461_000 + k * 10, 1e-4 if k % 2 else -1e-4, spread=0.06)
    t = 461_190
    count10 = len(inside(t, 10_000))
    assert count10 == 29  # 9 steady ticks (452..460 s) and the 20
    assert out["trades_rel_10s"] == pytest.approx(30 * count10 / len(inside(t, 300_000)))
    bps10 = [b for u, b in quotes if t - 10_000 < u <= t]
    bps300 = [b for u, b in quotes if t - 300_000 < u <= t]
    want = (sum(bps10) / len(bps10)) / (sum(bps300) / len(bps300))
    assert out["spread_10s_rel"] == pytest.approx(want, rel=1e-9)
    assert out["spread_10s_rel"] > 2


def test_flat_history_gives_missing_not_infinite():
    st = features.FeatureState()
    for i in range(400):
        out = st.update(i * 1_000, 50.0, 1.0)
    assert st.ready
    for name in ("ret_1s_z", "ret_60s_z", "rv_ratio_30_60", "rv_60s_rel"):
        assert math.isnan(out[features.FEATURE_NAMES.index(name)]), name


def test_a_gap_longer_than_the_warm_up_starts_history_again():
    st = features.FeatureState()
    for i in range(0, 301_000, 1_000):
        st.update(i, 100.0 + (i % 3), 1.0)
    assert st.ready
    st.update(300_000 + features.WARMUP_MS + 1, 100.0, 1.0)
    assert not st.ready  # the symbol went quiet for more than 300 s: cold again


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
    rv = features.trailing_realised_vol(ticks, 60_000)
    btc = (ticks["symbol"] == "BTC-USD").to_numpy()
    lo, hi = np.quantile(rv[btc], [0.1, 0.9])
    assert hi > 2.5 * lo  # calm and stressed stretches both occur
    stressed = ticks["stressed"].to_numpy()[btc]
    assert np.median(rv[btc][stressed]) > 1.5 * np.median(rv[btc][~stressed])


def test_clock_and_held_ticks_agree_in_both_states():
    """The consumer bounds state with ``last_t`` and ``held`` (consumer/states.py): both
    implementations report the same after in-order, late, gapped and same-time ticks."""
    times = [5_000, 6_000, 5_500, 6_000, 400_000, 400_001, 399_000, 710_000, 710_000]
    for state in (features.FeatureState, features.PyFeatureState):
        st = state()
        assert st.last_t == -(2**62) and st.held == 0
        seen = []
        for t in times:
            st.update(t, 100.0, 1.0)
            seen.append((st.last_t, st.held))
        assert seen == [
            (5_000, 1),
            (6_000, 2),
            (6_000, 3),  # late: counted at the clock
            (6_000, 4),
            (400_000, 1),  # a gap over 300 s: history starts again
            (400_001, 2),
            (400_001, 3),
            (710_000, 1),
            (710_000, 2),
        ], state
