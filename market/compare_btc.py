"""``python -m market.compare_btc``: real BTC one-minute bars against the generator's BTC-USD.

Generates only the BTC-USD symbol, only as many seconds of event time as the bars need (the
generator's one-minute statistics do not depend on the trade rate, so a low ``--rate`` is
enough), takes each minute's last trade as its close and compares close-to-close log
returns: std, EXCESS kurtosis (0 for a normal), the autocorrelation of |r| at lags of 1, 5,
15, 30 and 60 bars, and the share of event time spent in the stressed regime.

The defaults were tuned against all of the bars with seed 7, so that comparison is in
sample. ``--envelope SEEDS`` is the check that is not: each half of the bars against the
spread of SEEDS seeds the tuning never saw, as many bars each (is the real market a
plausible draw from the generator, and how far does one seed's figure move?).
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


ENVELOPE_KEYS = ("std", "excess_kurtosis", *(f"acf_abs_{lag}" for lag in LAGS))


def envelope(n_seeds: int = 40, first_seed: int = 100) -> dict[str, dict]:
    """The real bars cut in two halves, each against the generator's spread over
    ``n_seeds`` seeds it was never tuned on (``first_seed`` onwards), each seed as many
    bars as a half: per statistic the real halves' values and their percentile rank among
    the seeds' (0 or 100: outside everything the generator produced)."""
    close = btc.load()["c"].to_numpy()
    half = len(close) // 2
    halves = (bar_stats(close[: half + 1]), bar_stats(close[half:]))
    n_bars = int(halves[0]["bars"])
    gens = [generated_stats(n_bars, s) for s in range(first_seed, first_seed + n_seeds)]
    out = {}
    for k in ENVELOPE_KEYS:
        v = np.array([g[k] for g in gens])
        out[k] = {
            "real": [h[k] for h in halves],
            "rank": [float(np.mean(v < h[k]) * 100) for h in halves],
            "generated": [float(q) for q in np.quantile(v, [0.025, 0.5, 0.975])],
        }
    return out


def envelope_table(env: dict[str, dict]) -> str:
    lines = [
        f"{'':18}{'real 1st half':>14}{'rank':>6}{'real 2nd half':>14}{'rank':>6}"
        f"{'gen 2.5%':>11}{'median':>10}{'97.5%':>10}"
    ]
    for k, e in env.items():
        r, rk, g = e["real"], e["rank"], e["generated"]
        lines.append(
            f"{k:18}{r[0]:>14.4g}{rk[0]:>6.0f}{r[1]:>14.4g}{rk[1]:>6.0f}"
            f"{g[0]:>11.4g}{g[1]:>10.4g}{g[2]:>10.4g}"
        )
    return "\n".join(lines)


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
    p.add_argument(
        "--envelope", type=int, metavar="SEEDS", help="each half of the bars vs SEEDS new seeds"
    )
    a = p.parse_args()
    t0 = time.monotonic()
    if a.envelope:
        print(f"real bars in two halves; generated: {a.envelope} seeds from 100, as many bars")
        print(envelope_table(envelope(a.envelope)))
        print(f"\n({time.monotonic() - t0:.1f} s)")
        return
    real = real_stats()
    gens = {f"gen seed {s}": generated_stats(a.bars, s, a.rate) for s in a.seeds}
    print("real: pyqstrat 0.2.15 bitcoin_1min.csv (2018-03-23..27); generated: BTC-USD of")
    print(f"market.synthetic at {a.rate:g} calm ticks/s, {a.bars:,} one-minute bars per seed\n")
    print(table(real, gens))
    print(f"\n({time.monotonic() - t0:.1f} s)")


if __name__ == "__main__":
    main()
