"""``python -m tools.feature_trial``: do candidate feature families add information?

Issue 23 item 2. Each candidate is computed from the same ticks as the served features
(per symbol history, right-closed time windows, scale-free) and judged only on the
walk-forward folds, by the paired block-bootstrap PR-AUC gain of a logistic model on the
served features plus the candidate over the same model without it (the served default,
crypto-logit-v1, is that logistic model), and of boosted trees on everything over the
logistic on the served features. Nothing here is served: docs/features.md records a run
and what was kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd
import xgboost as xgb

from compiled_models import dataset, linear, train
from compiled_models import evaluate as ev
from market import realdata
from market.features import FEATURE_NAMES, _log_returns, _rolling, histories

CANDIDATES = (
    "rv_10s_rel",  # HAR-style: realised volatility at a shorter horizon, per unit time
    "rv_5s_rel",
    "jump_share_60s",  # 1 - bipower / realised variation over 60 s (the jump part)
    "imbalance_60s",  # signed volume (tick rule) / volume over 60 s
    "imbalance_10s",
    "trades_rel_10s",  # trade count per second over 10 s against 5 minutes
    "spread_10s_rel",  # mean quoted spread over 10 s against 5 minutes
    "absret_max_60s_z",  # largest single-tick move over 60 s in 5-minute per-second units
)


def candidates(ticks: pd.DataFrame) -> np.ndarray:
    """The candidate features per tick, rows aligned with ``ticks`` (NaN where undefined)."""
    out = np.full((len(ticks), len(CANDIDATES)), np.nan)
    for pos, g, t in histories(ticks):
        _, r = _log_returns(g)
        idx = pd.to_datetime(t, unit="ms")

        def roll(v: np.ndarray, w: str, how: str, idx: pd.DatetimeIndex = idx) -> np.ndarray:
            return _rolling(v, idx, w, how)

        r2 = r * r
        v300 = np.clip(roll(r2, "300s", "sum"), 0, None)
        s60 = np.clip(roll(r2, "60s", "sum"), 0, None)
        bipower = (np.pi / 2) * roll(
            np.abs(r) * np.abs(np.concatenate([[0.0], r[:-1]])), "60s", "sum"
        )
        size = g["size"].to_numpy(np.float64)
        signed = np.sign(r) * size
        bid, ask = g["bid"].to_numpy(np.float64), g["ask"].to_numpy(np.float64)
        bps = (ask - bid) / ((ask + bid) * 0.5) * 1e4
        with np.errstate(divide="ignore", invalid="ignore"):
            cols = [
                np.sqrt(30 * np.clip(roll(r2, "10s", "sum"), 0, None) / v300),
                np.sqrt(60 * np.clip(roll(r2, "5s", "sum"), 0, None) / v300),
                np.clip(1 - bipower / s60, 0, 1),
                roll(signed, "60s", "sum") / roll(size, "60s", "sum"),
                roll(signed, "10s", "sum") / roll(size, "10s", "sum"),
                30 * roll(size, "10s", "count") / roll(size, "300s", "count"),
                roll(bps, "10s", "mean") / roll(bps, "300s", "mean"),
                roll(np.abs(r), "60s", "max") / np.sqrt(v300 / 300),
            ]
        block = np.column_stack(cols)
        block[~np.isfinite(block)] = np.nan
        out[pos] = block
    return out


def trial(name: str, ticks: pd.DataFrame) -> None:
    ds = dataset.build(ticks)
    start = time.monotonic()
    tried = [j for j, c in enumerate(CANDIDATES) if c not in FEATURE_NAMES]  # not yet served
    extra = candidates(ticks)[:, tried].astype(np.float32)
    names = [CANDIDATES[j] for j in tried]
    print(f"{name}: candidates computed in {time.monotonic() - start:.0f} s", flush=True)
    n = ds.X.shape[1]
    both = dataclasses.replace(ds, X=np.hstack([ds.X, extra]))
    for k in dataset.FOLD_TEST_BLOCKS:
        fold = both.fold(k)
        tr, te = fold.train, fold.test

        def logistic(cols: list[int], tr: dataset.Split = tr, te: dataset.Split = te) -> np.ndarray:
            return linear.fit(tr.X[:, cols], tr.y).predict(te.X[:, cols])

        served = list(range(n))
        scores = {"served": logistic(served), "all": logistic(list(range(n + len(names))))}
        for j, c in enumerate(names):
            scores[f"+{c}"] = logistic([*served, n + j])
        trees = xgb.train({**train._V2, "nthread": 2}, xgb.DMatrix(tr.X, tr.y), 300)
        scores["trees on all"] = trees.inplace_predict(te.X)
        scores = {s: np.nan_to_num(v, nan=-1.0) for s, v in scores.items()}
        boot = ev.bootstrap(te.y, scores, te.t_ms, reference="served")
        print(f"{name} fold {k}: logistic on the served features PR-AUC "
              f"{boot['served']['pr_auc'][0]:.3f}; gain over it [95 % interval]:")  # fmt: skip
        for s in scores:
            if s != "served":
                g = boot[s]["pr_auc_gain_vs_served"]
                print(f"  {s:<22} {g[0]:+.3f} [{g[1]:+.3f}, {g[2]:+.3f}]", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", nargs="+", choices=("es", "synthetic"), default=["es", "synthetic"]
    )
    args = parser.parse_args()
    if "es" in args.data:
        trial("es", realdata.load().reset_index(drop=True))
    if "synthetic" in args.data:
        from market.synthetic import SyntheticTicks, universe

        gen = SyntheticTicks(
            symbols=universe(dataset.SYNTHETIC_SYMBOLS),
            seed=dataset.SYNTHETIC_SEED,
            rate_per_s=dataset.SYNTHETIC_RATE,
        )
        trial("synthetic", gen.frame(dataset.SYNTHETIC_TICKS))


if __name__ == "__main__":
    main()
