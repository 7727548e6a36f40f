"""The model report: the walk-forward table ``make models`` prints per artifact, and
``docs/model.md``, rendered from the manifests (never typed by hand)."""

from __future__ import annotations

from pathlib import Path

from compiled_models import scope
from compiled_models.manifest import Manifest
from compiled_models.train import SPECS

DOC = Path(__file__).resolve().parent.parent / "docs" / "model.md"
SCORES = ("model", "rv_60s", "rv_60s_rel", "persistence", "best_feature", "logistic")
RIVALS = ("best_feature", "logistic")  # the simple scorers a model must beat (issue 23)
GAINS = ("rv_60s", *RIVALS)


def _ci(v: list[float | None], digits: int = 3) -> str:
    if any(x is None for x in v):  # undefined: e.g. a block without positives
        return "n/a"
    return f"{v[0]:.{digits}f} [{v[1]:.{digits}f}, {v[2]:.{digits}f}]"


def fold_line(row: dict) -> str:
    s = row["scores"]
    return " | ".join(f"{k} PR-AUC {_ci(s[k]['pr_auc'])}" for k in SCORES)


def calibration_line(choice: dict) -> str:
    """The calibration choice in one line: each candidate's mean out-of-sample ECE and worst
    PR-AUC loss over the folds, the chosen one first."""
    cells = []
    for r in choice["candidates"]:
        name = r["method"] if r["method"] == "none" else f"{r['method']}/{r['window']}"
        if "refused" in r:
            cells.append(f"{name} refused")
        else:
            cells.append(
                f"{name} ECE {r['mean_ece']:.4f} PR-AUC loss <= {r['max_pr_auc_loss']:.3f}"
            )
    return f"chosen {choice['method']} on {choice['window']}; " + ", ".join(cells)


def _gain_verdict(m: Manifest) -> str:
    gains = [r["scores"]["model"]["pr_auc_gain_vs_rv_60s"] for r in m.metrics["walk_forward"]]
    wins = [g[1] is not None and g[1] > 0 for g in gains]
    if all(wins):
        return "beats raw `rv_60s` on every fold, each interval of the gain above zero"
    losses = sum(g[2] is not None and g[2] < 0 for g in gains)
    return (
        f"does **not** beat raw `rv_60s` with an interval that excludes zero on "
        f"{wins.count(False)} of {len(wins)} folds ({losses} significantly worse)"
    )


def _rival_verdict(m: Manifest) -> str:
    """Against each simple rival: on how many folds the paired gain's interval is above zero
    (the model wins), below zero (the rival wins), or spans it (no difference shown)."""
    rows = m.metrics["walk_forward"]
    if not all(f"pr_auc_gain_vs_{r}" in rows[0]["scores"]["model"] for r in RIVALS):
        return "rivals not evaluated (built before issue 23)"
    parts = []
    for rival in RIVALS:
        if rival == "logistic" and scope.is_logistic(m):
            parts.append("logistic: this artifact is the logistic rival (the same fit, tabulated)")
            continue
        gains = [r["scores"]["model"][f"pr_auc_gain_vs_{rival}"] for r in rows]
        won = sum(g[1] is not None and g[1] > 0 for g in gains)
        lost = sum(g[2] is not None and g[2] < 0 for g in gains)
        name = rival.replace("_", " ")
        parts.append(f"{name}: model better on {won}, worse on {lost}, no difference shown on "
                     f"{len(gains) - won - lost} of {len(gains)} folds")  # fmt: skip
    features = sorted({r.get("best_feature", "?") for r in rows})
    return "; ".join(parts) + f" (best single feature per fold: {', '.join(features)})"


def _together(m: Manifest) -> str:
    """The paired gains averaged over the folds (each fold resampled on its own)."""
    over = m.metrics.get("gain_over_folds")
    if not over:
        return "not computed (built before the mean over folds)"
    parts = []
    for g in GAINS:
        if g == "logistic" and scope.is_logistic(m):
            continue
        v = over[f"pr_auc_gain_vs_{g}"]
        verdict = (
            "model better"
            if v[1] is not None and v[1] > 0
            else "rival better"
            if v[2] is not None and v[2] < 0
            else "no difference shown"
        )
        name = f"`{g}`" if g == "rv_60s" else g.replace("_", " ")
        parts.append(f"vs {name} {_ci(v)} ({verdict})")
    return ", ".join(parts)


def _alert_rates(m: Manifest) -> str:
    """Per fold: the alert rate on test of the validation threshold (with its block
    interval) and of the threshold refitted hourly on the trailing 6 h."""
    rows = m.metrics["walk_forward"]
    if "alert_rate_test_refit" not in rows[0]:
        return "per-fold alert rates not computed (built before the refit replay)"
    fixed = ", ".join(_ci(r["alert_rate_test_interval"]) for r in rows)
    refit = ", ".join(f"{r['alert_rate_test_refit']:.3f}" for r in rows)
    return (
        f"threshold set on validation {fixed}; refitted hourly on the trailing 6 h "
        f"(`make refit-threshold`, replayed) {refit}"
    )


def _beaten_by(m: Manifest) -> str:
    """Folds where a baseline's point PR-AUC is above the model's (stated, not hidden)."""
    out = []
    for r in m.metrics["walk_forward"]:
        s = r["scores"]
        model = s["model"]["pr_auc"][0]
        better = [
            k
            for k in SCORES[1:]
            if k in s
            and not (k == "logistic" and scope.is_logistic(m))  # itself, up to tabulation
            and model is not None
            and s[k]["pr_auc"][0] is not None
            and s[k]["pr_auc"][0] > model
        ]
        if better:
            out.append(f"fold {r['test_block']}: {', '.join(better)}")
    if not out:
        return "no baseline scores a higher PR-AUC on any fold"
    return "a baseline scores a higher PR-AUC than the model on " + "; ".join(out)


def table(m: Manifest) -> str:
    lines = [
        f"\n{m.name} — {m.trained_on}",
        "  test PR-AUC [95 % block-bootstrap interval]; positives = label rate; "
        "gain = model - rv_60s",
    ]
    first = m.metrics["walk_forward"][0]["scores"]
    scores = [k for k in SCORES if k in first]
    gains = [g for g in ("rv_60s", *RIVALS) if f"pr_auc_gain_vs_{g}" in first["model"]]
    head = f"  {'fold test period':<44}{'pos':>6}" + "".join(f"{k:>24}" for k in scores)
    lines.append(head + "".join(f"{'gain vs ' + g:>26}" for g in gains))
    for r in m.metrics["walk_forward"]:
        s = r["scores"]
        period = f"{r['test_period'][0][:16]}..{r['test_period'][1][11:16]}"
        cells = "".join(f"{_ci(s[k]['pr_auc']):>24}" for k in scores)
        cells += "".join(f"{_ci(s['model'][f'pr_auc_gain_vs_{g}']):>26}" for g in gains)
        lines.append(f"  {period:<44}{r['test_positive_rate']:>6.3f}{cells}")
    c = m.metrics["calibration"]
    lines += [
        f"  verdict: {_gain_verdict(m)}; {_beaten_by(m)}",
        f"  against simple rivals: {_rival_verdict(m)}",
        f"  over the folds together (mean paired gain): {_together(m)}",
        f"  alert rate on test, folds {_folds(m)} (target {m.metrics['alert_rate']['target']}):"
        f" {_alert_rates(m)}",
        f"  calibration (out of sample): {calibration_line(_choice(c))}",
        f"  last fold: Brier raw {c['test_brier_trees']}, calibrated "
        f"{c['test_brier_calibrated']}, base rate {c['test_brier_base_rate']}; ECE raw "
        f"{c['test_ece_trees']}, calibrated {c['test_ece_calibrated']}",
    ]
    for r in m.metrics["walk_forward"]:
        if "flagged_share" in r:
            f = r["flagged_share"]
            lines.append(
                f"  fold {r['test_block']}: flagged share stressed {f['stressed']:.3f}, "
                f"calm {f['calm']:.3f}"
            )
    return "\n".join(lines)


INTRO = """# Models

Generated by `make models` (`compiled_models/report.py`) from the artifacts' manifests;
do not edit by hand. Every number here is also in `manifest.json` of its artifact, which
`ModelInfo` returns as `manifest_json`.

## What every artifact shares

- **Two kinds of scorer, one path**: boosted trees (XGBoost) and the logistic model
  (`crypto-logit-v1`, the default: on crypto-v1's folds the logistic rival scored at least
  as well as the trees, 0.49 / 0.38 / 0.40 against 0.29 / 0.34 / 0.37). The logistic model
  is written as an XGBoost model of one depth-11 tree per feature (`compiled_models/linear.py`:
  thresholds at the feature's training quantiles plus a geometric reach of 20x its range
  beyond it, leaves at the term's value mid-interval, missing values routed to the
  training median's leaf), so it is compiled, verified against XGBoost's own predict and
  served exactly like the trees. Tabulated vs exact logistic on the crypto folds: median
  logit difference 0.001, PR-AUC equal to the third decimal. Its weights per standardised
  feature are in the manifest (`params.logistic`).

- **Features** (`market/features.py`: vectorised for training, streamed in the consumer,
  tested equal on every real tick):
  scale-free ratios of the symbol's own quantities. Returns over 1, 5, 30 and 60 s in
  units of the symbol's 5-minute volatility (`ret_*_z`), 30 s against 60 s realised
  volatility (`rv_ratio_30_60`), 60 s against the 5-minute level (`rv_60s_rel`), trade
  count and volume per second against their 5-minute averages (`trades_rel_60s`,
  `volume_rel_60s`), and the quoted spread against its 5-minute mean (`spread_bps_rel`;
  missing without quotes, as in the E-mini data). No raw price, volume or volatility
  level is an input. Scale-free is not rate-free: with more trades per window the ratios
  are less noisy, so a model learns the dispersion of the trade rate it was trained at
  (crypto-v1: ~20 ticks/s per symbol); a stream trading much faster or slower per symbol
  can drift from it (see the runbook's VolspikeFeatureDrift).
- **Warm-up**: a symbol is scored only after 300 s of unbroken history (again after a
  gap longer than that); the consumer answers earlier ticks with a `warming_up` record
  and no probability. Warm-up rows are not trained on.
- **Label**: the realised volatility of the symbol's next 60 s, in units of its own
  last-5-minute level (scaled to 60 s), above the 90th percentile of that ratio on the
  fold's training rows. Chosen before any test block was looked at. A level relative to
  the symbol travels across markets; a fixed level fitted on futures does not. The build
  also evaluates the absolute alternative (the next 60 s of volatility itself above its
  training quantile) on the same folds: see "Label choice" under xgb-v2, where its share
  of positives follows the trading session and persistence of the level answers it.
- **Evaluation**: usable rows are cut into 5 time-ordered blocks with a 60 s embargo at
  each boundary. Fold k trains on blocks < k-1, fits the calibration and the decision
  threshold on block k-1 and tests on block k (folds 2, 3, 4; fold 4 is the served
  artifact). Intervals: 95 % percentile intervals from 200 block-bootstrap
  resamples of 5-minute blocks of event time; the gain over `rv_60s` is paired.
  Baselines: `rv_60s` (the raw 60 s realised volatility as a score), `rv_60s_rel` (its
  relative twin, the trailing version of the label) and persistence (the trailing 60 s
  already above the label threshold). Rivals, the simple scorers a model must beat to be
  worth serving: the best single feature (either sign, chosen by PR-AUC on the validation
  block, never on the test block) and a logistic model on the same features (standardised,
  missing values at the training median, fitted on the training block); the model's gain
  over each is paired like the gain over `rv_60s`.
- **Output**: a calibrated probability, applied by both servers after the compiled trees
  as a table of knots (linear between them). The calibration is chosen per artifact out
  of sample: none, Platt (a logistic curve on the logit of the trees' probability,
  strictly increasing, so the ranking and PR-AUC are kept) or isotonic (a step function:
  rows in one step tie), each fitted on the whole validation block or its most recent
  half, judged on the test blocks by ECE (10 equal-count bins), Brier skill against the
  validation base rate, PR-AUC lost and the alert rate on test; the lowest mean ECE among
  those losing at most 0.005 PR-AUC on any fold is served, refitted on the final fold's
  window. The decision threshold is the lowest calibrated value that flags at most 5 %
  of validation rows (or the top calibrated step when that step alone holds more); the
  alert rates on test (with a 5-minute-block interval: how far a few hours' rate moves by
  chance) show how well that holds out of sample. In production `make refit-threshold`
  refits it by the same rule on the trailing 6 h of live scores into the model config
  (both servers apply it on reload); the build replays an hourly refit on every test block.
- **Over the folds together**: each fold's paired gain is resampled on its own blocks and
  the draws averaged, so the mean gain over the three folds has its own interval, narrower
  than any one fold's.
- **Episodes**: positive ticks of a symbol no more than 60 s apart; warned = a flag in
  the 60 s before the episode's first tick (or at it); false-alarm minute = a minute with
  a flag, no positive tick and no episode starting within the next 60 s. Intervals (95 %)
  resample whole market-wide episodes (any symbol's episodes overlapping within 60 s are
  one: symbols sharing a regime spike together) for the warned share, and whole hours for
  the false-alarm minutes per symbol-day (in 10-minute blocks).
"""


def _folds(m: Manifest) -> str:
    return ", ".join(str(r["test_block"]) for r in m.metrics["walk_forward"])


def _choice(c: dict) -> dict:
    return {"method": c["method"], "window": c["window"], "candidates": c["candidates"]}


def section(m: Manifest) -> str:
    out = [f"## {m.name}", "", m.description, ""]
    out += [
        f"- Trained on: {m.trained_on}.",
        f"- Data: {m.data_period['source']}; final fold train {m.data_period['train'][0]} .. "
        f"{m.data_period['train'][1]}, test {m.data_period['test'][0]} .. "
        f"{m.data_period['test'][1]}.",
        f"- Output: {_output(m)};"
        f" decision threshold {m.decision_threshold:.4f} (alert rate: validation "
        f"{m.metrics['alert_rate']['validation']:.3f}, "
        f"test {m.metrics['alert_rate']['test']:.3f}).",
        f"- Verdict: {_gain_verdict(m)}; {_beaten_by(m)}.",
        f"- Against simple rivals (the best single feature, chosen on validation, and a "
        f"logistic model on the same features; paired gains): {_rival_verdict(m)}.",
        f"- Over the folds together (the mean of the folds' paired gains, each fold "
        f"resampled on its own): {_together(m)}.",
        f"- Alert rate on test, folds {_folds(m)} (target "
        f"{m.metrics['alert_rate']['target']}): {_alert_rates(m)}.",
        "",
        "| fold | test period | test rows | positives | model PR-AUC | rv_60s | rv_60s_rel "
        "| persistence | best feature | logistic | gain vs rv_60s | gain vs best feature "
        "| gain vs logistic | model ROC-AUC |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in m.metrics["walk_forward"]:
        s = r["scores"]
        out.append(
            f"| {r['test_block']} | {r['test_period'][0][:16]} .. {r['test_period'][1][11:16]} "
            f"| {r['test_rows']:,} | {r['test_positive_rate']:.3f} | "
            + " | ".join(_ci(s[k]["pr_auc"]) if k in s else "-" for k in SCORES)
            + " | "
            + " | ".join(_ci(s["model"].get(f"pr_auc_gain_vs_{g}", [None])) for g in GAINS)
            + f" | {_ci(s['model']['roc_auc'])} |"
        )
    out += [
        "",
        "| fold | episodes (market-wide) | warned (model / persistence) | model warned share "
        "| detected | false-alarm minutes (model / persistence) | model false-alarm minutes "
        "per symbol-day | minutes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in m.metrics["walk_forward"]:
        e, p = r["episodes"]["model"], r["episodes"]["persistence"]
        out.append(
            f"| {r['test_block']} | {e['episodes']} ({e.get('market_episodes', '-')}) | "
            f"{e['warned_before_onset']} / {p['warned_before_onset']} | "
            f"{_ci(e.get('warned_share', [None]))} | {e['detected']} / {p['detected']} | "
            f"{e['false_alarm_minutes']} / {p['false_alarm_minutes']} | "
            f"{_ci(e.get('false_alarm_minutes_per_day', [None]), 0)} | {e['minutes']} |"
        )
    flagged = [r for r in m.metrics["walk_forward"] if "flagged_share" in r]
    if flagged:
        out += [
            "",
            "| fold | flagged share, stressed regime | flagged share, calm regime |",
            "|---|---|---|",
        ]
        for r in flagged:
            f = r["flagged_share"]
            out.append(f"| {r['test_block']} | {f['stressed']:.3f} | {f['calm']:.3f} |")
    if "label_choice" in m.metrics:
        out += [
            "",
            "Label choice (walk-forward test PR-AUC; each label scored against raw `rv_60s` "
            "and against persistence of that label):",
            "",
            "| label | fold | positives | model | rv_60s | persistence | gain vs rv_60s |",
            "|---|---|---|---|---|---|---|",
        ]
        for label, folds in m.metrics["label_choice"].items():
            for f in folds:
                out.append(
                    f"| {label} | {f['test_block']} | {f['positive_rate']:.3f} | "
                    f"{_ci(f['model'])} | {_ci(f['rv_60s'])} | {_ci(f['persistence'])} | "
                    f"{_ci(f['gain_vs_rv_60s'])} |"
                )
    c, sd = m.metrics["calibration"], m.metrics["seeds"]["test_pr_auc"]
    out += [
        "",
        f"Seeds (final fold, uncalibrated test PR-AUC): {', '.join(f'{s:.3f}' for s in sd)}"
        f"{' (no subsampling: the seed changes nothing)' if len(set(sd)) == 1 < len(sd) else ''}. "
        f"Brier on the final test block: raw {c['test_brier_trees']}, calibrated "
        f"{c['test_brier_calibrated']}, a constant at the validation base rate "
        f"{c['test_brier_base_rate']}; ECE raw {c['test_ece_trees']}, calibrated "
        f"{c['test_ece_calibrated']}.",
        *_calibration_table(c),
        "",
        "| predicted | rows | raw: mean predicted -> observed | | calibrated: rows "
        "| mean predicted -> observed |",
        "|---|---|---|---|---|---|",
    ]
    raw = {b["bin"]: b for b in c["reliability_trees"]}
    cal = {b["bin"]: b for b in c["reliability_calibrated"]}
    for k in sorted(set(raw) | set(cal)):
        a, b = raw.get(k), cal.get(k)
        out.append(
            f"| {k} | {a['rows'] if a else 0:,} | "
            f"{_rel(a)} | "
            f"| {b['rows'] if b else 0:,} | "
            f"{_rel(b)} |"
        )
    return "\n".join(out) + "\n"


def _output(m: Manifest) -> str:
    c = m.metrics["calibration"]
    if not m.calibration:
        return "the raw probability (no calibration beat it out of sample)"
    return f"calibrated probability ({c['method']}, fitted on the {c['fitted_on']})"


def _calibration_table(c: dict) -> list[str]:
    out = [
        "",
        f"Calibration, chosen out of sample ({c['chosen_by']}): each candidate fitted on each "
        "fold's validation block (or its most recent half) and judged on that fold's test "
        "block; folds 2, 3, 4 left to right.",
        "",
        "| candidate | ECE | Brier skill | PR-AUC lost | alert rate on test |",
        "|---|---|---|---|---|",
    ]
    for r in c["candidates"]:
        name = r["method"] if r["method"] == "none" else f"{r['method']} / {r['window']}"
        if (r["method"], r["window"]) == (c["method"], c["window"]):
            name = f"**{name}** (served)"
        if "refused" in r:
            out.append(f"| {name} | refused: {r['refused']} | | | |")
            continue
        col = {
            k: ", ".join("-" if f[k] is None else f"{f[k]:.3f}" for f in r["folds"])
            for k in ("ece", "brier_skill", "pr_auc_loss", "alert_rate_test")
        }
        out.append(
            f"| {name} | {col['ece']} | {col['brier_skill']} | {col['pr_auc_loss']} | "
            f"{col['alert_rate_test']} |"
        )
    return out


def render(root: Path) -> str:
    parts = [INTRO]
    for spec in SPECS:
        if (root / spec.name / "manifest.json").exists():
            parts.append(section(Manifest.read(root / spec.name)))
    return "\n".join(parts)


def write(root: Path, doc: Path = DOC) -> None:
    """docs/model.md, and the README's table of what each artifact rests on."""
    doc.write_text(render(root))
    scope.write_readme(root)


def _rel(b: dict | None) -> str:
    return f"{b['mean_predicted']:.3f} -> {b['observed']:.3f}" if b else "-"


if __name__ == "__main__":  # ``python -m compiled_models.report``: re-render from manifests
    write(Path(__file__).resolve().parent)
    print(f"wrote {DOC}")
