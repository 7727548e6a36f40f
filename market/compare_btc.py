"""``python -m market.compare_btc``: real BTC one-minute bars against the generator's BTC-USD.

Generates only the BTC-USD symbol, only as many seconds of event time as the bars need (the
generator's one-minute statistics do not depend on the trade rate, so a low ``--rate`` is
enough), takes each minute's last trade as its close and compares close-to-close log
returns: std, EXCESS kurtosis (0 for a normal), the autocorrelation of |r| at lags of 1, 5,
15, 30 and 60 bars, and the share of event time spent in the stressed regime.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from market import btc
from market.synthetic import DEFAULT_SYMBOLS, SyntheticTicks

LAGS = (1, 5, 15, 30, 60)


def bar_stats(close: np.ndarray) -> dict[str, float]:
    """Statistics of one-minute close-to-close log returns."""
    r = np.diff(np.log(np.asarray(close, dtype=np.float64)))
    d = r - r.mean()
    m2 = float(np.mean(d * d))
    out = {"bars": float(r.size), "std": float(np.sqrt(m2)), "excess_kurtosis": 0.0}
    out["excess_kurtosis"] = float(np.mean(d**4) / m2**2 - 3.0)
    a = np.abs(r) - np.abs(r).mean()
    for lag in LAGS:
        out[f"acf_abs_{lag}"] = float(np.sum(a[:-lag] * a[lag:]) / np.sum(a * a))
    return out


def real_stats() -> dict[str, float]:
    out = bar_stats(btc.load()["c"].to_numpy())
    out["stressed_share"] = float("nan")
    return out


def generated_closes(
    n_bars: int = 5_000, seed: int = 7, rate_per_s: float = 5.0, **kwargs
) -> tuple[np.ndarray, float]:
    """``n_bars + 1`` one-minute closes of a BTC-USD-only stream and the share of event time
    it spent stressed (each tick weighted by the time to the next one)."""
    gen = SyntheticTicks(symbols=DEFAULT_SYMBOLS[:1], seed=seed, rate_per_s=rate_per_s, **kwargs)
    minutes = n_bars + 1
    end_ms = gen.start_ms + minutes * 60_000
    closes: list[pd.Series] = []
    t_all, s_all = [], []
    chunk = max(10_000, int(rate_per_s * 3_600))
    while True:
        df = gen.frame(chunk)
        t = df["event_time_ms"].to_numpy(np.int64)
        keep = t < end_ms
        t_all.append(t[keep])
        s_all.append(df["stressed"].to_numpy()[keep])
        minute = (t[keep] - gen.start_ms) // 60_000
        closes.append(pd.Series(df["price"].to_numpy()[keep]).groupby(minute).last())
        if not keep.all():
            break
    close = pd.concat(closes).groupby(level=0).last().reindex(range(minutes)).ffill()
    t = np.concatenate(t_all).astype(np.float64)
    s = np.concatenate(s_all)
    w = np.diff(np.append(t, end_ms))
    return close.to_numpy(), float(np.sum(w * s) / np.sum(w))


def generated_stats(n_bars: int = 5_000, seed: int = 7, rate_per_s: float = 5.0, **kw):
    close, share = generated_closes(n_bars, seed, rate_per_s, **kw)
    out = bar_stats(close)
    out["stressed_share"] = share
    return out


def table(real: dict[str, float], gens: dict[str, dict[str, float]]) -> str:
    rows = [
        ("bars (1-min returns)", "bars", "{:,.0f}"),
        ("1-min log-return std", "std", "{:.6f}"),
        ("excess kurtosis (normal = 0)", "excess_kurtosis", "{:.2f}"),
        *((f"ACF |r| lag {lag}", f"acf_abs_{lag}", "{:.3f}") for lag in LAGS),
        ("share of time stressed", "stressed_share", "{:.1%}"),
    ]
    heads = ["real BTC", *gens]
    lines = [f"{'':30}" + "".join(f"{h:>14}" for h in heads)]
    for label, key, fmt in rows:
        cells = [real, *gens.values()]
        vals = ["-" if np.isnan(c[key]) else fmt.format(c[key]) for c in cells]
        lines.append(f"{label:30}" + "".join(f"{v:>14}" for v in vals))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bars", type=int, default=5_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[7])
    p.add_argument("--rate", type=float, default=5.0, help="BTC-USD calm ticks per second")
    a = p.parse_args()
    t0 = time.monotonic()
    real = real_stats()
    gens = {f"gen seed {s}": generated_stats(a.bars, s, a.rate) for s in a.seeds}
    print("real: pyqstrat 0.2.15 bitcoin_1min.csv (2018-03-23..27); generated: BTC-USD of")
    print(f"market.synthetic at {a.rate:g} calm ticks/s, {a.bars:,} one-minute bars per seed\n")
    print(table(real, gens))
    print(f"\n({time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    main()
