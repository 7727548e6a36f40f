"""Real ticks -> features -> label -> time-ordered train/validation/test split.

Label: a "spike" is realised volatility over the next 60 s (``forward_realised_vol``)
above the 80th percentile of that quantity on the training period. The threshold is
fixed on training data only, so later periods are scored against the same bar.
Splits are by time (60 % / 20 % / 20 % of ticks), never shuffled, with a 60 s embargo
before each boundary so no training label looks into the validation period.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from market import features, realdata

HORIZON_MS = 60_000
SPIKE_QUANTILE = 0.80
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)


@dataclass(frozen=True)
class Split:
    X: np.ndarray  # float32 [rows, features]
    y: np.ndarray  # int8 labels
    t_ms: np.ndarray  # event times, for the manifest's data period

    @property
    def period(self) -> tuple[str, str]:
        ts = pd.to_datetime([self.t_ms[0], self.t_ms[-1]], unit="ms")
        return (ts[0].isoformat(), ts[1].isoformat())


@dataclass(frozen=True)
class Dataset:
    train: Split
    valid: Split
    test: Split
    rv_threshold: float
    n_ticks: int


def build(ticks: pd.DataFrame | None = None) -> Dataset:
    """The labelled, split real data set. Deterministic for the same ticks."""
    ticks = realdata.load() if ticks is None else ticks
    X = features.compute_frame(ticks).to_numpy(np.float32)
    fwd = features.forward_realised_vol(ticks, HORIZON_MS)
    t = ticks["event_time_ms"].to_numpy(np.int64)
    n = len(ticks)
    cut1 = int(n * SPLIT_FRACTIONS[0])
    cut2 = int(n * (SPLIT_FRACTIONS[0] + SPLIT_FRACTIONS[1]))
    bounds = [(0, cut1), (cut1, cut2), (cut2, n)]
    masks = []
    for lo, hi in bounds:
        m = np.zeros(n, dtype=bool)
        m[lo:hi] = True
        if hi < n:  # embargo: the label window must end before the next split starts
            m &= t + HORIZON_MS < t[hi]
        masks.append(m & ~np.isnan(fwd))
    thr = float(np.quantile(fwd[masks[0]], SPIKE_QUANTILE))
    y = (fwd > thr).astype(np.int8)
    train, valid, test = (Split(X[m], y[m], t[m]) for m in masks)
    return Dataset(train, valid, test, thr, n)
