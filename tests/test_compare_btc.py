"""The generator's BTC-USD one-minute statistics sit near real BTC bars' (market.btc, the
pyqstrat 0.2.15 sdist's bitcoin_1min.csv, fetched from PyPI once and cached in data/).

Bands, around the real values (std 0.00132, excess kurtosis 8.4, ACF of |r| 0.25 at lag 1
and 0.045 at lag 15 bars): std within 20 %, excess kurtosis within a factor 2, ACF lag 1
within +-0.08, ACF lag 15 within +-0.06. Seed-to-seed spread of 5,000 bars is wide
(kurtosis ~ 8-12, ACF lag 15 ~ 0.04-0.09): these are bands, not point targets."""

from __future__ import annotations

import pytest

from market import compare_btc


@pytest.fixture(scope="module")
def stats() -> tuple[dict[str, float], dict[str, float]]:
    return compare_btc.real_stats(), compare_btc.generated_stats(5_000, seed=7, rate_per_s=5.0)


def test_real_reference_is_the_known_csv(stats):
    real, _ = stats
    assert real["bars"] == 4_999
    assert real["std"] == pytest.approx(0.001316, rel=0.01)
    assert real["excess_kurtosis"] == pytest.approx(8.4, abs=0.1)


def test_generated_one_minute_returns_are_near_real_btc(stats):
    real, gen = stats
    print(compare_btc.table(real, {"generated": gen}))
    assert gen["bars"] == 5_000
    assert gen["std"] == pytest.approx(real["std"], rel=0.2)
    assert real["excess_kurtosis"] / 2 < gen["excess_kurtosis"] < real["excess_kurtosis"] * 2
    assert gen["acf_abs_1"] == pytest.approx(real["acf_abs_1"], abs=0.08)
    assert gen["acf_abs_15"] == pytest.approx(real["acf_abs_15"], abs=0.06)
    assert 0.1 < gen["stressed_share"] < 0.35


@pytest.mark.slow  # 40 seeds of 2,500 bars: ~30 s
def test_each_half_of_the_real_bars_is_a_plausible_draw_from_unseen_seeds():
    """Out of sample and across seeds (issue 23, item 5): the defaults were tuned on all the
    bars with seed 7; here each half of the bars is set against 40 seeds the tuning never
    saw (100-139), as many bars each. Every statistic of both halves lies inside the seeds'
    range (measured ranks 2-92; the first half's kurtosis 5.1 is the edge, at the 2nd
    percentile). A seed's own figure moves a lot on 2,500 bars (kurtosis 5.3-19.5 over the
    middle 95 %), which is why one seed's comparison above can only be a band. A weak check:
    it fails without the volatility factor (FAST_SD = SLOW_SD = 0: the second half's std
    is above every seed's, seen), but passes without jumps (seen): 2,500 bars cannot tell."""
    env = compare_btc.envelope(40, first_seed=100)
    print(compare_btc.envelope_table(env))
    for k, e in env.items():
        for half, rank in enumerate(e["rank"]):
            assert 0 < rank < 100, (k, half, e)
