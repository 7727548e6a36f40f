"""Ticks -> features -> label -> time-ordered walk-forward folds.

Label ("spike"): the realised volatility of the symbol's next 60 s, in units of its own
level over the last 5 minutes (scaled to 60 s), above a threshold. The threshold is the
``SPIKE_QUANTILE`` of that ratio on the fold's training rows only, stated before any
test period was looked at. A label relative to the symbol's own level is the one that
travels: a fixed volatility level fitted on E-mini futures means nothing on BTC, and on
one market it mostly asks "is volatility already high", which persistence answers.

Rows are usable once the symbol is warm (``features.WARMUP_MS`` of history) and its
next 60 s are in the data. Usable rows are cut into ``N_BLOCKS`` equal, time-ordered
blocks. Fold k trains on blocks ``< k - 1``, validates (calibration, decision threshold)
on block ``k - 1`` and tests on block ``k``; a 60 s embargo before every block boundary
keeps training labels out of later blocks. The last fold is the served artifact's split
(60 % / 20 % / 20 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from market import features, realdata

HORIZON_MS = 60_000
SPIKE_QUANTILE = 0.90
N_BLOCKS = 5
FOLD_TEST_BLOCKS = (2, 3, 4)  # walk-forward: each needs >= 1 training and 1 validation block


@dataclass(frozen=True)
class Split:
    X: np.ndarray  # float32 [rows, features]
    y: np.ndarray  # int8 labels
    t_ms: np.ndarray  # event times
    symbol: np.ndarray  # int codes, for per-symbol episodes
    baselines: dict[str, np.ndarray]  # scores that need no model
    stressed: np.ndarray | None = None  # synthetic data: the generator's regime per row

    @property
    def period(self) -> tuple[str, str]:
        ts = pd.to_datetime([self.t_ms.min(), self.t_ms.max()], unit="ms")
        return (ts[0].isoformat(), ts[1].isoformat())

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Fold:
    test_block: int
    train: Split
    valid: Split
    test: Split
    label_threshold: float  # on the forward 60 s volatility / own 5-minute level


@dataclass(frozen=True)
class Dataset:
    X: np.ndarray
    fwd_rel: np.ndarray  # the labelled quantity (NaN where it cannot be labelled)
    t_ms: np.ndarray
    symbol: np.ndarray
    block: np.ndarray  # -1: not usable (warming up, unlabelled or embargoed)
    baselines: dict[str, np.ndarray]
    n_ticks: int
    source: str
    stressed: np.ndarray | None = None
    fwd_abs: np.ndarray | None = None  # the next 60 s realised volatility (absolute)

    def fold(self, test_block: int, label: str = "relative") -> Fold:
        """The fold's splits. ``label="absolute"``: the rejected alternative (the next 60 s
        of realised volatility itself above its training quantile), for the comparison
        the build records (``metrics.label_choice``)."""
        tr = self.block < test_block - 1
        tr &= self.block >= 0
        target = self.fwd_rel if label == "relative" else self.fwd_abs
        assert target is not None, f"no {label} label in this data set"
        thr = float(np.quantile(target[tr], SPIKE_QUANTILE))
        y = (target > thr).astype(np.int8)

        def take(m: np.ndarray) -> Split:
            return Split(
                np.ascontiguousarray(self.X[m]),
                y[m],
                self.t_ms[m],
                self.symbol[m],
                {k: v[m] for k, v in self.baselines.items()},
                None if self.stressed is None else self.stressed[m],
            )

        return Fold(
            test_block,
            take(tr),
            take(self.block == test_block - 1),
            take(self.block == test_block),
            thr,
        )

    @property
    def final(self) -> Fold:
        return self.fold(N_BLOCKS - 1)

    # the served artifact's split, under the names the rest of the code uses
    @property
    def train(self) -> Split:
        return self.final.train

    @property
    def valid(self) -> Split:
        return self.final.valid

    @property
    def test(self) -> Split:
        return self.final.test


def build(ticks: pd.DataFrame | None = None, source: str = realdata.SOURCE) -> Dataset:
    """The labelled, blocked data set. Deterministic for the same ticks."""
    ticks = realdata.load() if ticks is None else ticks.reset_index(drop=True)
    feats, ready = features.compute(ticks)
    X = feats.to_numpy(np.float32)
    level = features.trailing_realised_vol(ticks, features.LONG_MS)
    level60 = level * np.sqrt(HORIZON_MS / features.LONG_MS)
    fwd_abs = features.forward_realised_vol(ticks, HORIZON_MS)
    with np.errstate(divide="ignore", invalid="ignore"):
        fwd_rel = fwd_abs / level60
    fwd_rel[~np.isfinite(fwd_rel)] = np.nan
    t = ticks["event_time_ms"].to_numpy(np.int64)
    usable = ready & ~np.isnan(fwd_rel)
    idx = np.flatnonzero(usable)
    block = np.full(len(ticks), -1, dtype=np.int8)
    for b, part in enumerate(np.array_split(idx, N_BLOCKS)):
        block[part] = b
    for b in range(N_BLOCKS - 1):  # embargo: no label window reaches the next block
        nxt = t[block == b + 1].min()
        block[(block == b) & (t + HORIZON_MS >= nxt)] = -1
    rv60 = features.trailing_realised_vol(ticks, HORIZON_MS)
    codes, _ = pd.factorize(ticks["symbol"], sort=False)
    rel = X[:, features.FEATURE_NAMES.index("rv_60s_rel")].astype(np.float64)
    baselines = {
        "rv_60s": rv60,  # the raw volatility level, as the old models' strongest input
        "rv_60s_rel": np.nan_to_num(rel, nan=0.0),  # the trailing twin of the label
    }
    stressed = ticks["stressed"].to_numpy(bool) if "stressed" in ticks else None
    return Dataset(
        X,
        fwd_rel,
        t,
        codes.astype(np.int32),
        block,
        baselines,
        len(ticks),
        source,
        stressed,
        fwd_abs,
    )


SYNTHETIC_SYMBOLS = 4
SYNTHETIC_RATE = 80.0  # calm ticks/s over all symbols: ~20 per symbol, like the demo's stream
SYNTHETIC_TICKS = 4_800_000  # ~14 hours of event time: ~220 calm/stressed cycles
SYNTHETIC_SEED = 2026


def synthetic() -> Dataset:
    """The crypto-like generator's stream (its own seed, never the demo's or tests')."""
    from market.synthetic import SyntheticTicks, universe

    gen = SyntheticTicks(
        symbols=universe(SYNTHETIC_SYMBOLS), seed=SYNTHETIC_SEED, rate_per_s=SYNTHETIC_RATE
    )
    ticks = gen.frame(SYNTHETIC_TICKS)
    return build(
        ticks,
        source=f"market/synthetic.py, seed {SYNTHETIC_SEED}, {SYNTHETIC_SYMBOLS} symbols, "
        f"{SYNTHETIC_TICKS:,} ticks",
    )
