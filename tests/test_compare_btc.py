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
