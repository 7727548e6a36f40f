"""Episode-level figures and their intervals (compiled_models/evaluate.py)."""

from __future__ import annotations

import numpy as np
import pytest

from compiled_models import evaluate as ev


def stream(symbols: int, onsets_s: list[int], warned: set[int], false_at_s: list[int]):
    """``symbols`` symbols ticking once a second for 4 hours; every symbol spikes for 20 s
    at each onset (one market-wide episode each); the flag is up 30 s before the onsets in
    ``warned`` (their index) and at each of ``false_at_s`` (far from any spike)."""
    t1 = np.arange(0, 4 * 3600) * 1000
    y1 = np.zeros(len(t1), np.int8)
    f1 = np.zeros(len(t1), bool)
    for i, s in enumerate(onsets_s):
        y1[s : s + 20] = 1
        if i in warned:
            f1[s - 30] = True
    f1[false_at_s] = True
    n = symbols
    return np.tile(y1, n), np.tile(f1, n), np.tile(t1, n), np.repeat(np.arange(n), len(t1))


def test_episodes_by_hand():
    onsets = [1_000, 5_000, 9_000, 12_000]
    y, flag, t, sym = stream(2, onsets, warned={0, 2}, false_at_s=[3_000, 3_030, 7_000])
    e = ev.episodes(y, flag, t, sym)
    assert e["episodes"] == 8 and e["market_episodes"] == 4  # 2 symbols spike together
    assert e["warned_before_onset"] == 4 and e["warned_share"][0] == 0.5
    assert e["detected"] == 4  # a flag 30 s before onset also covers the episode
    assert e["false_alarm_minutes"] == 2 * 2  # 3,000 s and 3,030 s share minute 50
    assert e["minutes"] == 2 * 240
    assert e["false_alarm_minutes_per_day"][0] == pytest.approx(4 / 480 * 1440)
    lo, hi = e["warned_share"][1:]
    assert lo < 0.5 < hi


def test_interval_resamples_market_episodes_not_symbols():
    """Symbols that spike together are one draw: four symbols with the same outcomes give
    the same warned-share interval as one symbol. (Mutation: resample per-symbol episodes
    and the four-symbol interval narrows.)"""
    onsets = list(range(600, 4 * 3600 - 600, 700))  # 19 market episodes
    warned = set(range(0, 19, 3))
    one = ev.episodes(*stream(1, onsets, warned, []))
    four = ev.episodes(*stream(4, onsets, warned, []))
    assert four["market_episodes"] == one["market_episodes"] == 19
    assert four["episodes"] == 4 * 19
    assert four["warned_share"] == one["warned_share"]
    assert one["warned_share"][2] - one["warned_share"][1] > 0.2


def test_no_episodes_gives_no_share_but_counts_false_alarms():
    y, flag, t, sym = stream(1, [], set(), [100, 200])
    e = ev.episodes(y, flag, t, sym)
    assert e["episodes"] == 0 and e["warned_share"] == [None, None, None]  # JSON has no NaN
    assert e["false_alarm_minutes"] == 2


def test_nothing_to_judge_gives_no_figures_not_nan():
    """JSON has no NaN: an empty test block reads n/a, not a NaN interval (seen before)."""
    e = np.empty(0)
    out = ev.episodes(e.astype(np.int8), e.astype(bool), e.astype(np.int64), e.astype(np.int32))
    assert out["episodes"] == out["minutes"] == 0
    assert out["false_alarm_minutes_per_day"] == out["warned_share"] == [None, None, None]


H_MS = 3_600_000


def test_the_refit_replay_follows_a_shift_by_hand():
    """Scores one per second: a calm history (uniform on [0, 1)), then test rows whose
    scores are all raised by 0.5 from hour 2 on. The fixed threshold (the history's 95th
    percentile) flags every shifted row; refitted hourly on the trailing hour it starts at
    the history's, stays there until the first refit that sees the shift, then lands on the
    shifted distribution's 95th percentile."""
    rng = np.random.default_rng(3)
    t_hist = np.arange(0, 2 * H_MS, 1000)
    p_hist = rng.random(len(t_hist))
    t = np.arange(2 * H_MS, 6 * H_MS, 1000)
    p = rng.random(len(t)) + np.where(t >= 4 * H_MS, 0.5, 0.0)
    initial = ev.threshold_for_rate(p_hist, 0.05)
    thr = ev.rolling_threshold(
        p, t, 0.05, initial, window_ms=H_MS, every_ms=H_MS, history=(p_hist, t_hist), min_rows=1
    )
    hour = (t - 2 * H_MS) // H_MS
    for h, want in [(0, 0.95), (1, 0.95), (2, 0.95), (3, 1.45)]:
        assert np.unique(thr[hour == h]).size == 1
        assert thr[hour == h][0] == pytest.approx(want, abs=0.01), h
    # the refit at hour 2 sees hour 1's (unshifted) scores only: the shifted hour 2 flags
    # most rows, the hours after it about 5 %
    assert np.mean(p[hour == 2] >= thr[hour == 2]) > 0.4
    assert np.mean(p[hour == 3] >= thr[hour == 3]) == pytest.approx(0.05, abs=0.01)
    # a refit with fewer than min_rows in its window keeps the threshold in force
    kept = ev.rolling_threshold(p, t, 0.05, 0.5, window_ms=H_MS, every_ms=H_MS, min_rows=10**9)
    assert np.all(kept == 0.5)


def test_the_alert_rate_interval_and_the_mean_gain_by_hand():
    t = np.arange(0, 2 * H_MS, 1000)  # 24 five-minute blocks
    flag = (t // 300_000) % 2 == 0  # every other block fully flagged
    v, lo, hi = ev.rate_interval(flag, t)
    assert v == 0.5 and lo < 0.4 and hi > 0.6  # blocks resampled whole: wide
    v, lo, hi = ev.rate_interval((t // 1000) % 2 == 0, t)  # half of every block
    assert v == lo == hi == 0.5  # nothing to resample away
    a = np.array([0.1, 0.0, 0.2, 0.1, 0.0])  # value, then draws
    b = np.array([0.3, 0.2, 0.4, 0.3, 0.2])
    v, lo, hi = ev.mean_gain([a, b])
    assert v == 0.2  # the mean of the values
    assert lo == pytest.approx(0.1, abs=0.01) and hi == pytest.approx(0.3, abs=0.01)  # draws
