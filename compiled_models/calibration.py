"""The probability calibration a manifest may carry, applied after the compiled trees.

``{}`` is the identity; ``{"method": "isotonic" | "platt", "x": [...], "y": [...]}`` maps
the raw probability p to ``float32(np.interp(float64(p), x, y))``: linear between knots,
clamped to y[0] / y[-1] outside [x[0], x[-1]]. The method names the fit that made the knots
(an isotonic step function, or a logistic curve on logit(p) tabulated at quantiles of the
scores: compiled_models/evaluate.py); both are applied the same way. The Go server
(server/native/internal/registry/calibration.go) validates and applies the same thing.
"""

from __future__ import annotations

import bisect
import itertools
import math

import numpy as np

METHODS = ("isotonic", "platt")  # how the knots were fitted; applied alike
_KEYS = {"method", "x", "y"}


SMALL = 8  # batches up to this size skip numpy's per-call overhead (~1.5 us)


class Isotonic:
    """Validated knots; ``apply`` maps a float32 batch of raw probabilities."""

    __slots__ = ("_xl", "_yl", "x", "y")

    def __init__(self, x: np.ndarray, y: np.ndarray):
        self.x, self.y = x, y
        self._xl, self._yl = x.tolist(), y.tolist()

    def apply(self, p: np.ndarray) -> np.ndarray:
        if len(p) <= SMALL:  # the same arithmetic as np.interp, into a new float32 array
            out = np.empty(len(p), np.float32)
            for i in range(len(p)):
                out[i] = self.one(float(p[i]))
            return out
        return np.interp(p.astype(np.float64), self.x, self.y).astype(np.float32)

    def one(self, v: float) -> float:
        """np.interp for one value, operation for operation (the Go server does the same)."""
        xs, ys = self._xl, self._yl
        if v != v:
            return v
        if v <= xs[0]:
            return ys[0]
        if v >= xs[-1]:
            return ys[-1]
        j = bisect.bisect_left(xs, v)  # xs[j-1] < v <= xs[j]
        if xs[j] == v:
            return ys[j]
        j -= 1
        slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
        return slope * (v - xs[j]) + ys[j]


def parse(doc: object) -> Isotonic | None:
    """None for ``{}``; raises ValueError naming what is wrong with anything else."""
    if not isinstance(doc, dict):
        raise ValueError(f"calibration must be an object, got {type(doc).__name__}")
    if not doc:
        return None
    if doc.get("method") not in METHODS:
        raise ValueError("calibration method must be 'isotonic' or 'platt'")
    if set(doc) != _KEYS:
        raise ValueError("calibration must have exactly the keys method, x, y")
    x, y = _knots(doc, "x"), _knots(doc, "y")
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(
            f"calibration x and y need the same length >= 2, got {len(x)} and {len(y)}"
        )
    if not all(b > a for a, b in itertools.pairwise(x)):
        raise ValueError("calibration x must be strictly increasing")
    if not all(b >= a for a, b in itertools.pairwise(y)):
        raise ValueError("calibration y must be non-decreasing")
    if y[0] < 0 or y[-1] > 1:
        raise ValueError("calibration y must lie within [0, 1]")
    return Isotonic(np.array(x, np.float64), np.array(y, np.float64))


def _knots(doc: dict, key: str) -> list[float]:
    values = doc[key]
    if not isinstance(values, list) or any(type(v) not in (int, float) for v in values):
        raise ValueError(f"calibration {key} must be a list of numbers")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"calibration {key} must be finite")
    return [float(v) for v in values]
