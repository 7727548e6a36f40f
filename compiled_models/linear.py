"""The logistic scorer, and the same scorer as an additive tree ensemble that compiles
through the tree path (XGBoost JSON -> Treelite -> TL2cgen) like every other artifact.

A logistic model is a sum of one term per feature, ``w_j * (x_j - mu_j) / sd_j``. Each
term becomes one tree: a balanced binary tree over the feature's thresholds whose leaves
hold the term at the middle of their interval. The thresholds are the feature's training
quantiles (where the rows are), an even grid over its training range (no wide bin where
rows are sparse) plus a geometric extension beyond the training range on
both sides (a linear term keeps growing there; a tree fitted by boosting would stop at the
last training value). A missing value takes the default direction towards the bin of the
training median, as the logistic fills it. The intercept is added to the first tree's
leaves, and ``base_score`` is 0.5 (a zero logit), so XGBoost's own predict is the
tabulated logistic and stays the exactness reference.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb
from sklearn.linear_model import LogisticRegression

from market.features import FEATURE_NAMES

DEPTH = 11
"""Tree depth per feature: 2**DEPTH - 1 thresholds, 2**DEPTH leaves."""
TAIL_SHARE = 0.125
"""Share of each feature's thresholds placed beyond its training range, on each side."""
TAIL_SPAN = 20.0
"""How far the extension reaches, in units of the feature's training range (0.05 %..99.95 %)."""
EDGE_Q = 0.0005
KIND = "logistic"
"""The artifact kind (train.ModelSpec params["kind"], the manifest's params.xgboost.kind)."""
_NO_PARENT = 2147483647  # XGBoost's parent of a root node


@dataclass(frozen=True)
class Logistic:
    median: np.ndarray  # fills a missing value
    mu: np.ndarray
    sd: np.ndarray
    coef: np.ndarray  # per standardised feature
    intercept: float

    def logit(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64)
        z = (np.where(np.isnan(x), self.median, x) - self.mu) / self.sd
        return z @ self.coef + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.logit(x)))

    def to_json(self) -> dict:
        """What the manifest states: the weight of each standardised feature."""
        return {
            "intercept": round(self.intercept, 6),
            "coef": {n: round(float(c), 6) for n, c in zip(FEATURE_NAMES, self.coef, strict=True)},
            "mean": {n: float(m) for n, m in zip(FEATURE_NAMES, self.mu, strict=True)},
            "sd": {n: float(v) for n, v in zip(FEATURE_NAMES, self.sd, strict=True)},
            "missing_as": {n: float(v) for n, v in zip(FEATURE_NAMES, self.median, strict=True)},
        }


def fit(train_x: np.ndarray, train_y: np.ndarray, c: float = 1.0) -> Logistic:
    """Standardised features, missing values at the training median, L2 (C=c)."""
    x = train_x.astype(np.float64)
    with warnings.catch_warnings():  # a feature missing on every row (no quotes): median 0
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nan_to_num(np.nanmedian(x, axis=0))
    xf = np.where(np.isnan(x), med, x)
    mu, sd = xf.mean(axis=0), xf.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((xf - mu) / sd, train_y)
    return Logistic(med, mu, sd, model.coef_[0].astype(np.float64), float(model.intercept_[0]))


def thresholds(values: np.ndarray, depth: int = DEPTH) -> np.ndarray:
    """Sorted unique float32 thresholds for one feature: training quantiles and an even grid
    over the training range, a geometric extension beyond it on both sides."""
    k = 2**depth - 1
    n_tail = int(k * TAIL_SHARE)
    lo, hi = np.quantile(values, [EDGE_Q, 1 - EDGE_Q])
    span = max(hi - lo, 1e-6 * max(abs(lo), abs(hi), 1.0))
    n_bulk = k - 2 * n_tail  # half at quantiles (where rows are), half evenly spaced (no
    # bin wider than the range / n_bulk * 2, where rows are sparse)
    bulk = np.concatenate(
        [
            np.quantile(values, np.linspace(EDGE_Q, 1 - EDGE_Q, n_bulk - n_bulk // 2)),
            np.linspace(lo, hi, n_bulk // 2),
        ]
    )
    reach = span * np.geomspace(1.0 / n_bulk, TAIL_SPAN, n_tail)
    t = np.concatenate([lo - reach, bulk, hi + reach]).astype(np.float32)
    return np.unique(t)


def _tree(feature: int, t: np.ndarray, leaf: np.ndarray, missing_as: np.float32) -> dict:
    """A balanced binary tree over sorted thresholds t (x < t goes left), leaves[i] for
    the interval between t[i-1] and t[i], a missing value going where ``missing_as`` goes;
    nodes numbered breadth-first."""
    nodes: list[dict] = []
    level = [(0, len(t), _NO_PARENT)]
    while level:
        nxt = []
        for lo, hi, parent in level:
            me = len(nodes)
            if lo == hi:
                nodes.append({"parent": parent, "leaf": float(leaf[lo])})
            else:
                mid = (lo + hi) // 2
                nodes.append({"parent": parent, "mid": mid})
                nxt.append((lo, mid, me))
                nxt.append((mid + 1, hi, me))
        # children of this level are numbered in order after it
        first = len(nodes)
        for i, (_, _, parent) in enumerate(nxt):
            nd = nodes[parent]
            nd.setdefault("kids", []).append(first + i)
        level = nxt
    n = len(nodes)
    out: dict[str, Any] = {
        "base_weights": [0.0] * n,
        "categories": [],
        "categories_nodes": [],
        "categories_segments": [],
        "categories_sizes": [],
        "default_left": [0] * n,
        "id": 0,
        "left_children": [-1] * n,
        "loss_changes": [0.0] * n,
        "parents": [nd["parent"] for nd in nodes],
        "right_children": [-1] * n,
        "split_conditions": [0.0] * n,
        "split_indices": [0] * n,
        "split_type": [0] * n,
        "sum_hessian": [1.0] * n,
        "tree_param": {
            "num_deleted": "0",
            "num_feature": "0",
            "num_nodes": str(n),
            "size_leaf_vector": "1",
        },
    }
    for i, nd in enumerate(nodes):
        if "leaf" in nd:
            out["split_conditions"][i] = nd["leaf"]
            out["base_weights"][i] = nd["leaf"]
        else:
            out["left_children"][i], out["right_children"][i] = nd["kids"]
            thr = float(t[nd["mid"]])
            out["split_conditions"][i] = thr
            out["split_indices"][i] = feature
            out["default_left"][i] = int(missing_as < thr)
    return out


def tabulate(model: Logistic, train_x: np.ndarray, depth: int = DEPTH) -> xgb.Booster:
    """The logistic model as an XGBoost booster of one tree per used feature."""
    n_features = train_x.shape[1]
    x = train_x.astype(np.float64)
    xf = np.where(np.isnan(x), model.median, x)
    body: list[dict] = []
    for j in range(n_features):
        w = model.coef[j] / model.sd[j]
        if w == 0.0 or np.ptp(xf[:, j]) == 0:
            continue
        t = thresholds(xf[:, j], depth)
        t64 = t.astype(np.float64)
        mids = np.concatenate([[t64[0]], (t64[:-1] + t64[1:]) / 2, [t64[-1]]])
        leaf = w * (mids - model.mu[j])
        if not body:
            leaf = leaf + model.intercept  # the first tree carries it
        tree = _tree(j, t, leaf.astype(np.float32), np.float32(model.median[j]))
        tree["id"] = len(body)
        tree["tree_param"]["num_feature"] = str(n_features)
        body.append(tree)
    if not body:
        raise ValueError("the logistic model uses no feature")
    doc = {
        "learner": {
            "attributes": {},
            "feature_names": [],
            "feature_types": [],
            "gradient_booster": {
                "model": {
                    "cats": {"enc": [], "feature_segments": [], "sorted_idx": []},
                    "gbtree_model_param": {
                        "num_parallel_tree": "1",
                        "num_trees": str(len(body)),
                    },
                    "iteration_indptr": list(range(len(body) + 1)),
                    "tree_info": [0] * len(body),
                    "trees": body,
                },
                "name": "gbtree",
            },
            "learner_model_param": {
                "base_score": "[5E-1]",
                "boost_from_average": "0",
                "num_class": "0",
                "num_feature": str(n_features),
                "num_target": "1",
            },
            "objective": {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "1"}},
        },
        "version": [3, 2, 0],
    }
    booster = xgb.Booster()
    booster.load_model(bytearray(json.dumps(doc).encode()))
    return booster
