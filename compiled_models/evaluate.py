"""Honest numbers for an artifact: ranking metrics with block-bootstrap intervals,
episode-level warnings and false alarms, calibration and its reliability table.

Intervals resample whole 5-minute blocks of event time (ticks inside a block are
strongly dependent, so resampling rows would make intervals far too narrow).
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from compiled_models import calibration, linear

BOOT_BLOCK_MS = 300_000
BOOT_REPS = 200
BOOT_SEED = 5
EPISODE_MERGE_MS = 60_000  # positive ticks closer than this belong to one episode
WARN_MS = 60_000  # a flag up to this long before an onset (or at it) warns of it
FALSE_ALARM_BLOCK_MIN = 10  # false-alarm minutes are resampled in blocks this long


class _Ranked:
    """One score sorted once; PR-AUC and ROC-AUC for any row weights in O(n).

    Same definitions as scikit-learn's ``average_precision_score`` (step-wise) and
    ``roc_auc_score`` (trapezoid, ties at one threshold), with integer row weights: a
    bootstrap sample is the same rows, each counted as often as it was drawn.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray) -> None:
        order = np.argsort(-p.astype(np.float64), kind="stable")
        self.y = y[order].astype(np.float64)
        ps = p[order]
        self.ends = np.concatenate([np.flatnonzero(np.diff(ps)), [len(ps) - 1]])
        self.order = order

    def metrics(self, w: np.ndarray | None = None) -> tuple[float, float]:
        if w is None:
            tp_w, fp_w = self.y, 1.0 - self.y
        else:
            ws = w[self.order]
            tp_w, fp_w = ws * self.y, ws * (1.0 - self.y)
        tp = np.cumsum(tp_w)[self.ends]
        fp = np.cumsum(fp_w)[self.ends]
        if tp[-1] == 0 or fp[-1] == 0:
            return float("nan"), float("nan")
        recall = tp / tp[-1]
        precision = tp / np.maximum(tp + fp, 1e-300)
        ap = float(np.sum(np.diff(recall, prepend=0.0) * precision))
        tpr = np.concatenate([[0.0], recall])
        fpr = np.concatenate([[0.0], fp / fp[-1]])
        roc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) * 0.5))
        return ap, roc


def bootstrap(
    y: np.ndarray,
    scores: dict[str, np.ndarray],
    t_ms: np.ndarray,
    reference: str | tuple[str, ...] | None = None,
    gain_draws: dict[tuple[str, str], np.ndarray] | None = None,
) -> dict[str, dict]:
    """PR-AUC and ROC-AUC per score as ``[value, lo95, hi95]``; with ``reference`` (one
    score's name or several), also each score's PR-AUC gain over each, paired (the same
    resampled blocks for both). ``gain_draws``: filled with each gain's value followed by
    its resampled draws, keyed (score, reference), for ``mean_gain``."""
    refs = (reference,) if isinstance(reference, str) else tuple(reference or ())
    blocks = (t_ms - t_ms.min()) // BOOT_BLOCK_MS
    _, block = np.unique(blocks, return_inverse=True)
    n_blocks = int(block.max()) + 1
    rng = np.random.default_rng(BOOT_SEED)
    ranked = {k: _Ranked(y, p) for k, p in scores.items()}
    draws: dict[str, list[tuple[float, float]]] = {k: [] for k in scores}
    for _ in range(BOOT_REPS):
        counts = np.bincount(rng.integers(0, n_blocks, n_blocks), minlength=n_blocks)
        w = counts[block].astype(np.float64)
        for k, r in ranked.items():
            draws[k].append(r.metrics(w))
    out: dict[str, dict] = {}
    for k, r in ranked.items():
        pr, roc = r.metrics()
        d = np.array(draws[k])
        out[k] = {"pr_auc": _ci(pr, d[:, 0]), "roc_auc": _ci(roc, d[:, 1])}
        for reference in refs:
            if k == reference:
                continue
            ref = np.array(draws[reference])
            gain = pr - ranked[reference].metrics()[0]
            out[k]["pr_auc_gain_vs_" + reference] = _ci(gain, d[:, 0] - ref[:, 0])
            if gain_draws is not None:
                gain_draws[(k, reference)] = np.concatenate([[gain], d[:, 0] - ref[:, 0]])
    return out


def mean_gain(per_fold: list[np.ndarray]) -> list[float]:
    """The mean of several folds' paired gains, ``[value, lo95, hi95]``: each fold's blocks
    resampled on their own (``bootstrap``'s ``gain_draws``, draw i of every fold averaged).
    Folds are disjoint stretches of time, so the mean's interval is narrower than any one
    fold's: the gain over the folds together."""
    stacked = np.vstack(per_fold)
    return _ci(float(stacked[:, 0].mean()), stacked[:, 1:].mean(axis=0))


def rate_interval(flag: np.ndarray, t_ms: np.ndarray) -> list[float]:
    """A share of flagged rows with its 95 % interval over resampled 5-minute blocks (how
    far a few hours' alert rate moves by chance)."""
    blocks = (t_ms - t_ms.min()) // BOOT_BLOCK_MS
    _, block = np.unique(blocks, return_inverse=True)
    n_blocks = int(block.max()) + 1
    rows = np.bincount(block, minlength=n_blocks).astype(np.float64)
    hits = np.bincount(block, weights=flag.astype(np.float64), minlength=n_blocks)
    rng = np.random.default_rng(BOOT_SEED)
    draws = np.empty(BOOT_REPS)
    for i in range(BOOT_REPS):
        counts = np.bincount(rng.integers(0, n_blocks, n_blocks), minlength=n_blocks)
        draws[i] = (counts * hits).sum() / (counts * rows).sum()
    return _ci(float(flag.mean()), draws)


def best_single_feature(
    valid_x: np.ndarray, valid_y: np.ndarray, names: tuple[str, ...]
) -> tuple[int, float, str]:
    """The simplest rival: one feature (either sign) used as the score, the one with the
    best PR-AUC on the validation block (never chosen on the test block). Missing values
    score lowest. Returns (column, sign, name)."""
    best: tuple[float, int, float] = (-1.0, 0, 1.0)
    for j in range(valid_x.shape[1]):
        col = valid_x[:, j].astype(np.float64)
        if np.isnan(col).all():
            continue
        for sign in (1.0, -1.0):
            ap = _Ranked(valid_y, _filled(sign * col)).metrics()[0]
            if not np.isnan(ap) and ap > best[0]:
                best = (ap, j, sign)
    _, j, sign = best
    return j, sign, ("" if sign > 0 else "-") + names[j]


def _filled(score: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(score), -np.inf, score)


def feature_score(x: np.ndarray, column: int, sign: float) -> np.ndarray:
    return _filled(sign * x[:, column].astype(np.float64))


def logistic_rival(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """A small logistic model on the same features (standardised, missing values at the
    training median, L2, fitted on the training block): the linear rival."""

    return linear.fit(train_x, train_y).predict(test_x)


def _ci(value: float, draws: np.ndarray) -> list[float]:
    draws = draws[~np.isnan(draws)]
    if not len(draws):
        return [value, float("nan"), float("nan")]
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return [round(value, 4), round(float(lo), 4), round(float(hi), 4)]


def episodes(y: np.ndarray, flag: np.ndarray, t_ms: np.ndarray, symbol: np.ndarray) -> dict:
    """Episode = positive ticks of one symbol no more than ``EPISODE_MERGE_MS`` apart;
    onset = its first tick. Warned: a flag in ``[onset - WARN_MS, onset]`` (that tick's
    label is already about the next 60 s). False-alarm minute: a 1-minute bucket of one
    symbol with a flag, no positive tick and no onset within the next ``WARN_MS``.

    Intervals (95 %): the warned and detected shares resample whole market episodes
    (episodes of any symbol overlapping within ``EPISODE_MERGE_MS`` are one: symbols that
    share a regime spike together, so they are not independent draws); false-alarm
    minutes per symbol-day resample whole ``FALSE_ALARM_BLOCK_MIN``-minute blocks of every
    symbol's minutes (longer than a calm/stressed cycle)."""
    spans: list[tuple[int, int, bool, bool]] = []  # (onset, end, warned, detected)
    blocks: list[np.ndarray] = []  # per symbol-minute: its block, and whether a false alarm
    falses: list[np.ndarray] = []
    for s in np.unique(symbol):
        m = symbol == s
        ys, fs, ts = y[m].astype(bool), flag[m].astype(bool), t_ms[m]
        pos_t = ts[ys]
        gap = np.diff(pos_t) > EPISODE_MERGE_MS
        starts = pos_t[np.concatenate([[True], gap])] if len(pos_t) else pos_t
        ends = pos_t[np.concatenate([gap, [True]])] if len(pos_t) else pos_t
        flag_t = ts[fs]
        for a, b in zip(starts, ends, strict=True):
            first = np.searchsorted(flag_t, a - WARN_MS, side="left")
            warned = bool(np.searchsorted(flag_t, a, side="right") > first)
            detected = bool(np.searchsorted(flag_t, b, side="right") > first)
            spans.append((int(a), int(b), warned, detected))
        minute = ts // 60_000
        uniq = np.unique(minute)
        has_flag = np.zeros(len(uniq), bool)
        has_pos = np.zeros(len(uniq), bool)
        k = np.searchsorted(uniq, minute)
        has_flag[k[fs]] = True
        has_pos[k[ys]] = True
        bucket_end = (uniq + 1) * 60_000
        soon = np.searchsorted(starts, bucket_end + WARN_MS) > np.searchsorted(
            starts, uniq * 60_000
        )
        falses.append(has_flag & ~has_pos & ~soon)
        blocks.append(uniq // FALSE_ALARM_BLOCK_MIN)
    _, block = np.unique(np.concatenate([np.empty(0, np.int64), *blocks]), return_inverse=True)
    false_b = np.bincount(block, np.concatenate([np.empty(0), *falses])).astype(np.float64)
    return _episode_summary(spans, false_b, np.bincount(block).astype(np.float64))


def _episode_summary(
    spans: list[tuple[int, int, bool, bool]], false_b: np.ndarray, min_b: np.ndarray
) -> dict:
    """``false_b`` / ``min_b``: false-alarm minutes / symbol-minutes per block."""
    spans.sort()
    cluster = np.zeros(len(spans), np.int64)  # the market episode of each episode
    k, end = -1, 0
    for i, (a, b, _w, _d) in enumerate(spans):
        if k < 0 or a > end + EPISODE_MERGE_MS:
            k, end = k + 1, b
        else:
            end = max(end, b)
        cluster[i] = k
    warned = np.array([w for _a, _b, w, _d in spans], np.float64)
    detected = np.array([d for _a, _b, _w, d in spans], np.float64)
    n_clusters = int(cluster[-1]) + 1 if len(spans) else 0
    rng = np.random.default_rng(BOOT_SEED)
    share_draws: dict[str, list[float]] = {"warned": [], "detected": []}
    per_day_draws: list[float] = []
    by_cluster = {
        what: np.bincount(cluster, v, minlength=n_clusters)
        for what, v in (("warned", warned), ("detected", detected))
    }
    size = np.bincount(cluster, minlength=n_clusters).astype(np.float64)
    for _ in range(BOOT_REPS):
        if n_clusters:
            c = np.bincount(rng.integers(0, n_clusters, n_clusters), minlength=n_clusters)
            for what, draws in share_draws.items():
                draws.append(float(c @ by_cluster[what] / (c @ size)))
        if len(min_b):
            d = np.bincount(rng.integers(0, len(min_b), len(min_b)), minlength=len(min_b))
            per_day_draws.append(float(d @ false_b / max(float(d @ min_b), 1.0) * 1440))
    n_ep = len(spans)
    none: list[float | None] = [None, None, None]  # JSON has no NaN: the report says n/a
    return {
        "episodes": n_ep,
        "market_episodes": n_clusters,
        "warned_before_onset": int(warned.sum()),
        "detected": int(detected.sum()),
        "false_alarm_minutes": int(false_b.sum()),
        "minutes": int(min_b.sum()),
        "warned_share": _ci(float(warned.mean()), np.array(share_draws["warned"]))
        if n_ep
        else none,
        "detected_share": (
            _ci(float(detected.mean()), np.array(share_draws["detected"])) if n_ep else none
        ),
        "false_alarm_minutes_per_day": (
            _ci(float(false_b.sum() / min_b.sum() * 1440), np.array(per_day_draws))
            if len(min_b)
            else none
        ),
    }


def fit_calibration(p_raw: np.ndarray, y: np.ndarray, method: str = "isotonic") -> dict:
    """A monotone map from the trees' probability to an observed frequency, fitted on these
    rows, as knots for ``np.interp`` (what both servers apply); ``{}`` for ``none``.

    isotonic: the step function of isotonic regression (few distinct outputs: rows in one
    step tie, which costs ranking). platt: a logistic curve on the logit of the
    probability, tabulated at PLATT_KNOTS quantiles of these scores (strictly increasing:
    the order of the rows, hence PR-AUC, is kept)."""
    if method == "none":
        return {}
    if len(np.unique(y)) < 2:
        raise ValueError(
            f"calibration: the fitting rows have only label {int(y[0])} "
            f"({len(y):,} rows); a constant map would flag every row or none"
        )
    if method == "platt":
        doc = _platt_knots(p_raw.astype(np.float64), y.astype(np.float64))
    elif method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=True, out_of_bounds="clip")
        iso.fit(p_raw.astype(np.float64), y.astype(np.float64))
        x, v = np.asarray(iso.X_thresholds_, float), np.asarray(iso.y_thresholds_, float)
        keep = np.concatenate([[True], np.diff(x) > 0])  # strictly increasing knots
        if keep.sum() < 2:  # one distinct score: nothing to map
            return {}
        doc = {"method": "isotonic", "x": x[keep].tolist(), "y": v[keep].tolist()}
    else:
        raise ValueError(f"calibration: unknown method {method!r}")
    calibration.parse(doc)  # what the servers will accept
    return doc


PLATT_KNOTS = 256
_EPS = 1e-6


def _platt_knots(p: np.ndarray, y: np.ndarray) -> dict:
    z = np.log(np.clip(p, _EPS, 1 - _EPS) / (1 - np.clip(p, _EPS, 1 - _EPS)))
    # an unpenalised 1-D logistic fit: y ~ sigmoid(a * logit(p) + b)
    lr = LogisticRegression(C=1e6, max_iter=1000).fit(z[:, None], y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    if not a > 0:
        raise ValueError(f"calibration: platt slope {a:.3g} <= 0 (the scores rank nothing)")
    x = np.unique(np.concatenate([[0.0, 1.0], np.quantile(p, np.linspace(0, 1, PLATT_KNOTS))]))
    xz = np.log(np.clip(x, _EPS, 1 - _EPS) / (1 - np.clip(x, _EPS, 1 - _EPS)))
    v = 1.0 / (1.0 + np.exp(-(a * xz + b)))
    return {"method": "platt", "x": x.tolist(), "y": np.maximum.accumulate(v).tolist()}


def ece(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over equal-count bins of the score: the row-weighted mean
    of |mean predicted - observed frequency|."""
    parts = np.array_split(np.argsort(p, kind="stable"), bins)
    return float(
        sum(len(b) / len(p) * abs(float(p[b].mean()) - float(y[b].mean())) for b in parts if len(b))
    )


def reliability_deciles(p: np.ndarray, y: np.ndarray) -> list[dict]:
    """Predicted vs observed frequency per decile of the score (equal row counts)."""
    out = []
    for i, b in enumerate(np.array_split(np.argsort(p, kind="stable"), 10)):
        out.append(
            {
                "decile": i + 1,
                "mean_predicted": round(float(p[b].mean()), 4),
                "observed": round(float(y[b].mean()), 4),
            }
        )
    return out


def calibrate(p_raw: np.ndarray, cal: dict) -> np.ndarray:
    """What both servers apply after the trees (compiled_models/calibration.py)."""
    iso = calibration.parse(cal)
    return p_raw.astype(np.float32) if iso is None else iso.apply(p_raw.astype(np.float32))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Predicted vs observed frequency in equal-width probability bins."""
    edges = np.linspace(0, 1, bins + 1)
    k = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = k == b
        if m.any():
            out.append(
                {
                    "bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}",
                    "rows": int(m.sum()),
                    "mean_predicted": round(float(p[m].mean()), 4),
                    "observed": round(float(y[m].mean()), 4),
                }
            )
    return out


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return round(float(np.mean((p.astype(np.float64) - y) ** 2)), 5)


REFIT_WINDOW_MS = 6 * 3_600_000  # make refit-threshold's defaults (server/refit_threshold.py)
REFIT_EVERY_MS = 3_600_000  # the schedule docs/runbook.md suggests
REFIT_MIN_ROWS = 50_000


def threshold_for_rate(p: np.ndarray, rate: float) -> float:
    """The smallest score that flags at most ``rate`` of these rows; the highest score
    when even it flags more (a calibrated output has only a few distinct steps)."""
    if not len(p) or np.isnan(p).any():
        raise ValueError(f"threshold: {len(p)} scores, {int(np.isnan(p).sum())} NaN")
    cands = np.unique(p)
    share = 1.0 - np.searchsorted(np.sort(p), cands, side="left") / len(p)
    ok = cands[share <= rate]
    return float(ok[0]) if len(ok) else float(cands[-1])


def rolling_threshold(
    p: np.ndarray,
    t_ms: np.ndarray,
    rate: float,
    initial: float,
    window_ms: int = REFIT_WINDOW_MS,
    every_ms: int = REFIT_EVERY_MS,
    history: tuple[np.ndarray, np.ndarray] | None = None,
    min_rows: int = REFIT_MIN_ROWS,
) -> np.ndarray:
    """The threshold in force at each row of (``p``, ``t_ms``) when ``make refit-threshold``
    runs every ``every_ms`` of event time on the scores of the trailing ``window_ms``
    (``history``'s (scores, times) before these rows, then these rows as they arrive),
    replayed: from ``initial``, each refit with at least ``min_rows`` scores in its window
    replaces it (the tool refuses fewer)."""
    hp, ht = history if history is not None else (p[:0], t_ms[:0])
    all_p, all_t = np.concatenate([hp, p]), np.concatenate([ht, t_ms])
    order = np.argsort(all_t, kind="stable")
    all_p, all_t = all_p[order], all_t[order]
    thr = np.full(len(p), float(initial))
    current = float(initial)
    start = int(t_ms.min())
    for at in range(start, int(t_ms.max()) + 1, every_ms):
        lo, hi = np.searchsorted(all_t, [at - window_ms, at], side="left")
        if hi - lo >= min_rows:
            current = threshold_for_rate(all_p[lo:hi], rate)
        thr[(t_ms >= at) & (t_ms < at + every_ms)] = current
    return thr
