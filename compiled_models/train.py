"""Model definitions and training. Every model sees the full feature vector so all
artifacts share one serving schema; features a model must not use are masked to NaN
(XGBoost's "missing") during training, which makes them carry zero split gain."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import xgboost as xgb

from compiled_models import linear
from compiled_models.dataset import Split
from market.features import FEATURE_NAMES

SEED = 20130901
ALERT_RATE = 0.05
"""Decision thresholds flag this share of validation rows (after calibration): about one
minute in twenty on alert, a rate an operator can still read."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    data: str  # "es": real E-mini ticks; "synthetic": the crypto-like generator
    params: dict
    rounds: int
    uses: tuple[str, ...]  # features the model may split on
    train_tail: float = 1.0  # fraction of the training period used (most recent part)
    compare_labels: bool = False  # also evaluate the rejected absolute label (the build)

    @property
    def kind(self) -> str:
        """The kind, from params: "trees" (boosted by XGBoost) or linear.KIND (tabulated)."""
        return self.params.get("kind", "trees")


_ALL = FEATURE_NAMES
_BASE = {
    "objective": "binary:logistic",
    "eval_metric": "aucpr",
    "tree_method": "hist",
    "seed": SEED,
    "nthread": 2,
}
_V2 = {
    **_BASE,
    "max_depth": 6,
    "eta": 0.05,
    "min_child_weight": 20,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
}

SPECS = (
    ModelSpec(
        "baseline-rv60",
        "Rule on the last 60 s's realised volatility against the symbol's own 5-minute "
        "level: one monotone depth-2 tree on rv_60s_rel.",
        "es",
        {
            **_BASE,
            "max_depth": 2,
            "eta": 1.0,
            "monotone_constraints": "("
            + ",".join("1" if f == "rv_60s_rel" else "0" for f in FEATURE_NAMES)
            + ")",
        },
        rounds=1,
        uses=("rv_60s_rel",),
    ),
    ModelSpec(
        "xgb-v1",
        "XGBoost, depth 4, 150 rounds, on the most recent half of the E-mini training period.",
        "es",
        {**_BASE, "max_depth": 4, "eta": 0.08, "min_child_weight": 20},
        rounds=150,
        uses=_ALL,
        train_tail=0.5,
    ),
    ModelSpec(
        "xgb-v2",
        "XGBoost, depth 6, 300 rounds, whole E-mini training period, row/column subsampling.",
        "es",
        _V2,
        rounds=300,
        uses=_ALL,
        compare_labels=True,
    ),
    ModelSpec(
        "crypto-v1",
        "XGBoost, depth 6, 300 rounds, trained on the synthetic crypto stream "
        "(market/synthetic.py): it demonstrates the pipeline, it has never seen a real "
        "crypto market.",
        "synthetic",
        _V2,
        rounds=300,
        uses=_ALL,
    ),
    ModelSpec(
        "crypto-logit-v1",
        "Logistic model on every feature (standardised, L2), trained on the synthetic "
        "crypto stream and compiled as one tree per feature (compiled_models/linear.py): "
        "on crypto-v1's own walk-forward folds it scores at least as well as the trees "
        "(docs/model.md), so it is the default.",
        "synthetic",
        {"kind": linear.KIND, "C": 1.0, "depth": linear.DEPTH},
        rounds=1,
        uses=_ALL,
    ),
)


def masked(X: np.ndarray, uses: tuple[str, ...]) -> np.ndarray:
    out = X.copy()
    drop = [i for i, f in enumerate(FEATURE_NAMES) if f not in uses]
    out[:, drop] = np.nan
    return out


def train(spec: ModelSpec, split: Split, seed: int = SEED) -> xgb.Booster:
    n = len(split.y)
    start = int(n * (1.0 - spec.train_tail))
    if spec.kind == linear.KIND:  # deterministic: the seed has nothing to vary
        x = masked(split.X[start:], spec.uses)
        model = linear.fit(x, split.y[start:], c=spec.params["C"])
        booster = linear.tabulate(model, x, depth=spec.params["depth"])
        booster.set_attr(logistic=json.dumps(model.to_json()))
        return booster
    dtrain = xgb.DMatrix(
        masked(split.X[start:], spec.uses), split.y[start:], feature_names=list(FEATURE_NAMES)
    )
    return xgb.train({**spec.params, "seed": seed}, dtrain, spec.rounds)
