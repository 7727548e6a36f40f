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
