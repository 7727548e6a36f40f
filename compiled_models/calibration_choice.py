"""Which calibration an artifact serves, chosen out of sample (#23 item 3).

Every candidate (method x fitting window) is fitted on each walk-forward fold's validation
block (or its most recent half) and judged on that fold's test block, which it never saw:
expected calibration error (ECE, 10 equal-count bins), Brier skill against the validation
base rate, the PR-AUC it keeps of the raw trees' (a step function ties rows and loses
ranking), and the alert rate on test of the threshold set on validation.

The choice: among candidates that fit on every fold and lose at most PR_AUC_NOISE of PR-AUC
on any fold, the lowest mean ECE; on a tie, the earlier (simpler) one. The served
calibration is that method refitted on the final fold's window (the most recent one:
the window rolls forward with the data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compiled_models import evaluate as ev

METHODS = ("none", "platt", "isotonic")
WINDOWS = ("validation", "recent_half")
WINDOW_TEXT = {
    "validation": "whole validation block",
    "recent_half": "most recent half of the validation block",
}
PR_AUC_NOISE = 0.005
"""Largest PR-AUC loss (absolute, on any fold) a calibration may cost: well inside the
folds' bootstrap intervals (+-0.05 and wider), so a choice within it keeps the ranking."""


@dataclass(frozen=True)
class FoldScores:
    """What one walk-forward fold offers a calibration: raw validation and test scores."""

    raw_v: np.ndarray
    y_v: np.ndarray
    t_v: np.ndarray
    raw_t: np.ndarray
    y_t: np.ndarray


def window_rows(t_ms: np.ndarray, window: str) -> np.ndarray:
    """Rows of the validation block a window fits on (a boolean mask)."""
    if window == "validation":
        return np.ones(len(t_ms), bool)
    if window == "recent_half":
        return t_ms >= np.median(t_ms)
    raise ValueError(f"calibration window {window!r}")


def fit(f: FoldScores, method: str, window: str) -> dict:
    m = window_rows(f.t_v, window)
    return ev.fit_calibration(f.raw_v[m], f.y_v[m], method)


def judge(f: FoldScores, cal: dict, alert_rate: float) -> dict:
    p_t, p_v = ev.calibrate(f.raw_t, cal), ev.calibrate(f.raw_v, cal)
    thr = ev.threshold_for_rate(p_v, alert_rate)
    base = ev.brier(np.full(len(f.y_t), f.y_v.mean()), f.y_t)
    raw_pr = ev._Ranked(f.y_t, f.raw_t).metrics()[0]
    return {
        "ece": round(ev.ece(p_t, f.y_t), 4),
        "brier_skill": round(1.0 - ev.brier(p_t, f.y_t) / base, 4) if base else None,
        "pr_auc_loss": round(raw_pr - ev._Ranked(f.y_t, p_t).metrics()[0], 4),
        "alert_rate_test": round(float((p_t >= thr).mean()), 4),
    }


def choose(folds: list[FoldScores], alert_rate: float) -> dict:
    """{"method", "window", "candidates": [{method, window, folds: [...] | refused, ...}]}"""
    rows = []
    for method in METHODS:
        for window in WINDOWS if method != "none" else WINDOWS[:1]:
            row: dict = {"method": method, "window": window}
            try:
                row["folds"] = [judge(f, fit(f, method, window), alert_rate) for f in folds]
            except ValueError as exc:  # e.g. a window with one label
                row["refused"] = str(exc)
                rows.append(row)
                continue
            row["mean_ece"] = round(float(np.mean([x["ece"] for x in row["folds"]])), 4)
            row["max_pr_auc_loss"] = max(x["pr_auc_loss"] for x in row["folds"])
            rows.append(row)
    best = pick(rows)
    return {"method": best["method"], "window": best["window"], "candidates": rows}


def pick(rows: list[dict]) -> dict:
    """The rule: fitted on every fold, at most PR_AUC_NOISE of PR-AUC lost on any fold, the
    lowest mean ECE; the earlier on a tie ("none" comes first and always qualifies)."""
    eligible = [r for r in rows if "folds" in r and r["max_pr_auc_loss"] <= PR_AUC_NOISE]
    return min(eligible, key=lambda r: r["mean_ece"])  # min keeps the first on a tie
