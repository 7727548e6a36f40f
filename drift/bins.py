"""Reference bins and the population stability index (PSI), shared by the build (which puts
each artifact's bins in its manifest), the consumer (which counts live values into them per
micro-batch) and the tests. numpy only: the consumer imports it.

A feature's bins are cut at the deciles of its non-missing reference values (ties merged), plus
one bin for missing (NaN) values, so "the share of missing values changed" is drift too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EPSILON = 1e-4
"""Shares are floored at this before the PSI's logarithm (an empty bin would be infinite)."""
QUANTILES = np.linspace(0.1, 0.9, 9)


@dataclass(frozen=True)
class Bins:
    edges: np.ndarray  # inner edges, increasing; value bins are (-inf, e0], (e0, e1], ... (ek, inf)
    shares: np.ndarray  # reference share per bin: len(edges) + 1 value bins, then the NaN bin

    @property
    def size(self) -> int:
        return len(self.edges) + 2

    def labels(self) -> list[str]:
        return [str(i) for i in range(len(self.edges) + 1)] + ["nan"]

    def to_json(self) -> dict:
        return {"edges": self.edges.tolist(), "shares": self.shares.tolist()}

    @classmethod
    def from_json(cls, d: dict) -> Bins:
        edges = np.asarray(d["edges"], np.float64)
        shares = np.asarray(d["shares"], np.float64)
        if len(shares) != len(edges) + 2 or np.any(np.diff(edges) <= 0):
            raise ValueError("drift bins: edges must increase and shares have len(edges) + 2")
        return cls(edges, shares)


def fit(reference: np.ndarray) -> Bins:
    """Bins for one feature from its reference values."""
    values = np.asarray(reference, np.float64)
    present = values[~np.isnan(values)]
    edges = np.unique(np.quantile(present, QUANTILES)) if present.size else np.empty(0)
    probe = Bins(edges, np.zeros(len(edges) + 2))
    counts = count(probe, values)
    return Bins(edges, counts / max(len(values), 1))


def count(bins: Bins, values: np.ndarray) -> np.ndarray:
    """How many of ``values`` fall in each bin (NaN last)."""
    idx = np.searchsorted(bins.edges, values, side="left")  # (e_{i-1}, e_i] -> i
    idx[np.isnan(values)] = bins.size - 1
    return np.bincount(idx, minlength=bins.size)


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors (each summing to 1)."""
    e = np.maximum(np.asarray(expected, np.float64), EPSILON)
    a = np.maximum(np.asarray(actual, np.float64), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def fit_all(x: np.ndarray, names: tuple[str, ...]) -> dict[str, Bins]:
    return {n: fit(x[:, j]) for j, n in enumerate(names)}


def psi_by_feature(
    bins: dict[str, Bins], x: np.ndarray, names: tuple[str, ...]
) -> dict[str, float]:
    """PSI of each feature of the rows ``x`` against the reference bins."""
    if len(x) == 0:
        raise ValueError("no rows to compare")
    out = {}
    for j, n in enumerate(names):
        counts = count(bins[n], x[:, j].astype(np.float64))
        out[n] = psi(bins[n].shares, counts / counts.sum())
    return out
