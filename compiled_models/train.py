"""Model definitions and training. Every model sees the full feature vector so all
artifacts share one serving schema; features a model must not use are masked to NaN
(XGBoost's "missing") during training, which makes them carry zero split gain."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xgboost as xgb
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

from compiled_models.dataset import Dataset, Split
from market.features import FEATURE_NAMES

SEED = 20130901


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    params: dict
    rounds: int
    uses: tuple[str, ...]  # features the model may split on
    train_tail: float = 1.0  # fraction of the training period used (most recent part)


# Price level is non-stationary (and meaningless across instruments), so no model uses it.
_DYNAMIC = tuple(f for f in FEATURE_NAMES if f != "price")
_BASE = {
    "objective": "binary:logistic",
    "eval_metric": "aucpr",
    "tree_method": "hist",
    "seed": SEED,
    "nthread": 2,
}

SPECS = (
    ModelSpec(
        "baseline-rv60",
        "Rule on current 60 s realised volatility: one monotone depth-2 tree on rv_60s.",
        {
            **_BASE,
            "max_depth": 2,
            "eta": 1.0,
            "monotone_constraints": "("
            + ",".join("1" if f == "rv_60s" else "0" for f in FEATURE_NAMES)
            + ")",
        },
        rounds=1,
        uses=("rv_60s",),
    ),
    ModelSpec(
        "xgb-v1",
        "XGBoost, depth 4, 150 rounds, trained on the most recent half of the training period.",
        {**_BASE, "max_depth": 4, "eta": 0.08, "min_child_weight": 20},
        rounds=150,
        uses=_DYNAMIC,
        train_tail=0.5,
    ),
    ModelSpec(
        "xgb-v2",
        "XGBoost, depth 6, 300 rounds, whole training period, row/column subsampling.",
        {
            **_BASE,
            "max_depth": 6,
            "eta": 0.05,
            "min_child_weight": 20,
            "subsample": 0.8,
            "colsample_bytree": 0.8,
        },
        rounds=300,
        uses=_DYNAMIC,
    ),
)


def masked(X: np.ndarray, uses: tuple[str, ...]) -> np.ndarray:
    out = X.copy()
    drop = [i for i, f in enumerate(FEATURE_NAMES) if f not in uses]
    out[:, drop] = np.nan
    return out


@dataclass
class Trained:
    booster: xgb.Booster
    threshold: float
    metrics: dict = field(default_factory=dict)


def _scores(booster: xgb.Booster, split: Split) -> np.ndarray:
    return booster.inplace_predict(split.X)


def evaluate(p: np.ndarray, y: np.ndarray, threshold: float) -> dict:
    return {
        "pr_auc": float(average_precision_score(y, p)),
        "roc_auc": float(roc_auc_score(y, p)),
        "f1_at_threshold": float(f1_score(y, p >= threshold)),
        "positive_rate": float(y.mean()),
        "rows": len(y),
    }


def best_f1_threshold(p: np.ndarray, y: np.ndarray) -> float:
    """Decision threshold maximising F1 on validation data."""
    cands = np.unique(np.quantile(p, np.linspace(0.5, 0.999, 200)))
    f1 = [f1_score(y, p >= c) for c in cands]
    return float(cands[int(np.argmax(f1))])


def train(spec: ModelSpec, ds: Dataset) -> Trained:
    n = len(ds.train.y)
    start = int(n * (1.0 - spec.train_tail))
    dtrain = xgb.DMatrix(
        masked(ds.train.X[start:], spec.uses), ds.train.y[start:], feature_names=list(FEATURE_NAMES)
    )
    booster = xgb.train(spec.params, dtrain, spec.rounds)
    threshold = best_f1_threshold(_scores(booster, ds.valid), ds.valid.y)
    metrics = {
        "validation": evaluate(_scores(booster, ds.valid), ds.valid.y, threshold),
        "test": evaluate(_scores(booster, ds.test), ds.test.y, threshold),
        "train_rows": int(n - start),
    }
    return Trained(booster, threshold, metrics)
