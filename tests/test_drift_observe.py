"""The consumer's drift counts (consumer/drift.py ArtifactBins.observe: every column of a
batch in one searchsorted) against ``drift.bins.count`` column by column, the reference,
on values at, between and beyond the edges, NaN and infinities."""

from __future__ import annotations

import numpy as np
import pytest

from consumer.drift import ArtifactBins
from drift import bins as db


def manifest(rng: np.random.Generator, n: int) -> dict:
    def bins() -> dict:
        k = int(rng.integers(0, 12))
        edges = np.unique(np.round(rng.normal(size=k), 2)).tolist()
        return {"edges": edges, "shares": [1 / (len(edges) + 2)] * (len(edges) + 2)}

    names = [f"f{j}" for j in range(n)]
    return {
        "feature_names": names,
        "drift": {"features": {m: bins() for m in names}, "prediction": bins()},
    }


@pytest.mark.parametrize("seed", range(8))
def test_one_pass_counts_what_the_reference_counts(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 16))
    ab = ArtifactBins("a", manifest(rng, n))
    for rows in (0, 1, 7, 500):
        x = np.round(rng.normal(size=(rows, n)), 2).astype(np.float32)  # often on an edge
        x[rng.random(x.shape) < 0.05] = np.nan
        x[rng.random(x.shape) < 0.02] = np.inf
        x[rng.random(x.shape) < 0.02] = -np.inf
        probs = rng.random(rows).astype(np.float32)
        probs[rng.random(rows) < 0.05] = np.nan
        want = [c.copy() + db.count(b, x[:, j].astype(np.float64)) for j, (b, c) in
                enumerate(zip(ab.bins, ab.counts, strict=True))]  # fmt: skip
        want_pred = ab.pred_counts + db.count(ab.pred_bins, probs.astype(np.float64))
        ab.observe(x, probs)
        for j in range(n):
            assert ab.counts[j].tolist() == want[j].tolist(), (seed, rows, j)
        assert ab.pred_counts.tolist() == want_pred.tolist()


def test_more_columns_than_features_count_the_features_only():
    rng = np.random.default_rng(1)
    ab = ArtifactBins("a", manifest(rng, 3))
    x = rng.normal(size=(50, 15)).astype(np.float32)
    ab.observe(x, rng.random(50).astype(np.float32))
    assert [int(c.sum()) for c in ab.counts] == [50, 50, 50] and ab.pred_counts.sum() == 50


@pytest.mark.parametrize("edge", [float("nan"), float("inf")])
def test_edges_that_are_not_finite_are_refused(edge):
    m = manifest(np.random.default_rng(2), 2)
    m["drift"]["features"]["f1"] = {"edges": [0.0, edge], "shares": [0.25] * 4}
    with pytest.raises(ValueError, match="finite"):
        ArtifactBins("a", m)
