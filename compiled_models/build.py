"""``python -m compiled_models.build``: evaluate, train, calibrate, compile and write
every artifact, then ``docs/model.md`` from the manifests.

Each artifact is a folder ``compiled_models/<name>/`` with the shared library, the
XGBoost model it was compiled from, a manifest (with the walk-forward evaluation) and a
reference feature sample.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import logging
import platform
import shutil
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb

from compiled_models import calibration_choice as cchoice
from compiled_models import compile as cc
from compiled_models import dataset, linear, report, scope, train
from compiled_models import evaluate as ev
from compiled_models.manifest import (
    LIBRARY_FILE,
    REFERENCE_FILE,
    REFERENCE_RAW_FILE,
    XGB_MODEL_FILE,
    Manifest,
    sha256_bytes,
)
from drift import bins
from market.features import FEATURE_NAMES, WARMUP_MS

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent
REFERENCE_ROWS = 5_000
ANNOTATE_ROWS = 50_000
EXTRA_SEEDS = (1, 2)  # the final fold is trained again with these seed offsets
TRAINED_ON = {
    "es": "real E-mini S&P 500 futures trades (2013-09-01..03, one instrument, no quotes)",
    "synthetic": "the synthetic crypto-like stream of market/synthetic.py (generated, "
    "never a real crypto market)",
}


def versions() -> dict:
    return {
        "xgboost": version("xgboost-cpu"),
        "treelite": version("treelite"),
        "tl2cgen": version("tl2cgen"),
        "numpy": version("numpy"),
        "compiler": cc.compiler_version(),
        "python": platform.python_version(),
    }


def _train_fold(spec: train.ModelSpec, fold: dataset.Fold) -> dict:
    """Train on the fold; its raw validation and test scores."""
    booster = train.train(spec, fold.train)
    return {
        "booster": booster,
        "raw_v": booster.inplace_predict(fold.valid.X),
        "raw_t": booster.inplace_predict(fold.test.X),
    }


def _fold_scores(fold: dataset.Fold, trained: dict) -> cchoice.FoldScores:
    return cchoice.FoldScores(
        trained["raw_v"], fold.valid.y, fold.valid.t_ms, trained["raw_t"], fold.test.y
    )


def _fold_metrics(
    fold: dataset.Fold, trained: dict, choice: dict, gain_draws: dict
) -> tuple[dict, dict]:
    """Calibrate (the chosen method, on its window of the validation block) and set the
    threshold on the validation block, score the test block against the baselines and
    rivals. Returns (table row, what the artifact keeps); ``gain_draws`` gets the paired
    gains' bootstrap draws."""
    booster, raw_v, raw_t = trained["booster"], trained["raw_v"], trained["raw_t"]
    cal = cchoice.fit(_fold_scores(fold, trained), choice["method"], choice["window"])
    p_v, p_t = ev.calibrate(raw_v, cal), ev.calibrate(raw_t, cal)
    thr = ev.threshold_for_rate(p_v, train.ALERT_RATE)
    te = fold.test
    persistence = (te.baselines["rv_60s_rel"] > fold.label_threshold).astype(np.float64)
    col, sign, feature = ev.best_single_feature(fold.valid.X, fold.valid.y, FEATURE_NAMES)
    scores = {
        "model": p_t,
        "rv_60s": te.baselines["rv_60s"],
        "rv_60s_rel": te.baselines["rv_60s_rel"],
        "persistence": persistence,
        # the rivals a model must beat: the best single feature (chosen on validation) and
        # a small logistic model on the same features
        "best_feature": ev.feature_score(te.X, col, sign),
        "logistic": ev.logistic_rival(fold.train.X, fold.train.y, te.X),
    }
    # make refit-threshold replayed: hourly on the trailing 6 h of scores (the validation
    # block, then the test rows as they arrive), starting from the validation threshold
    history = (p_v, fold.valid.t_ms)
    refit = p_t >= ev.rolling_threshold(p_t, te.t_ms, train.ALERT_RATE, thr, history=history)
    row = {
        "test_block": fold.test_block,
        "train_period": fold.train.period,
        "test_period": te.period,
        "train_rows": len(fold.train),
        "test_rows": len(te),
        "test_positive_rate": round(float(te.y.mean()), 4),
        "label_threshold": round(fold.label_threshold, 4),
        "scores": ev.bootstrap(
            te.y,
            scores,
            te.t_ms,
            reference=("rv_60s", "best_feature", "logistic"),
            gain_draws=gain_draws,
        ),
        "best_feature": feature,
        "episodes": {
            "model": ev.episodes(te.y, p_t >= thr, te.t_ms, te.symbol),
            "persistence": ev.episodes(te.y, persistence > 0, te.t_ms, te.symbol),
        },
        "alert_rate_test": round(float((p_t >= thr).mean()), 4),
        "alert_rate_test_interval": ev.rate_interval(p_t >= thr, te.t_ms),
        "alert_rate_test_refit": round(float(refit.mean()), 4),
    }
    if te.stressed is not None:
        flag = p_t >= thr
        row["flagged_share"] = {
            "stressed": round(float(flag[te.stressed].mean()), 4),
            "calm": round(float(flag[~te.stressed].mean()), 4),
        }
    keep = {"booster": booster, "cal": cal, "thr": thr, "raw_v": raw_v, "raw_t": raw_t}
    return row, keep


def _label_choice(spec: train.ModelSpec, ds: dataset.Dataset, rows: list[dict]) -> dict:
    """The label question, answered on the walk-forward folds: the relative label (kept)
    against the absolute one (the next 60 s of volatility above its training quantile).
    Each is scored against raw rv_60s and against persistence of its own label."""
    out: dict[str, list[dict]] = {"relative": [], "absolute": []}
    for r in rows:
        s = r["scores"]
        out["relative"].append(
            {
                "test_block": r["test_block"],
                "positive_rate": r["test_positive_rate"],
                **{k: s[k]["pr_auc"] for k in ("model", "rv_60s", "persistence")},
                "gain_vs_rv_60s": s["model"]["pr_auc_gain_vs_rv_60s"],
            }
        )
    for k in dataset.FOLD_TEST_BLOCKS:
        fold = ds.fold(k, label="absolute")
        te = fold.test
        p_t = train.train(spec, fold.train).inplace_predict(te.X)
        persistence = (te.baselines["rv_60s"] > fold.label_threshold).astype(np.float64)
        scores = {"model": p_t, "rv_60s": te.baselines["rv_60s"], "persistence": persistence}
        b = ev.bootstrap(te.y, scores, te.t_ms, reference="rv_60s")
        out["absolute"].append(
            {
                "test_block": k,
                "positive_rate": round(float(te.y.mean()), 4),
                **{n: b[n]["pr_auc"] for n in scores},
                "gain_vs_rv_60s": b["model"]["pr_auc_gain_vs_rv_60s"],
            }
        )
    return out


def evaluate_spec(spec: train.ModelSpec, ds: dataset.Dataset) -> tuple[dict, dict]:
    folds = {k: ds.fold(k) for k in dataset.FOLD_TEST_BLOCKS}
    trained = {k: _train_fold(spec, f) for k, f in folds.items()}
    choice = cchoice.choose([_fold_scores(folds[k], trained[k]) for k in folds], train.ALERT_RATE)
    logger.info("%s calibration: %s", spec.name, report.calibration_line(choice))
    rows: list[dict] = []
    keep: dict = {}
    draws: list[dict] = []
    for k, fold in folds.items():
        draws.append({})
        row, keep = _fold_metrics(fold, trained[k], choice, draws[-1])
        rows.append(row)
        logger.info("%s fold %d: %s", spec.name, k, report.fold_line(row))
    final = ds.final  # the last fold is the artifact's own split
    y_t, y_v = final.test.y, final.valid.y
    p_t = ev.calibrate(keep["raw_t"], keep["cal"])
    p_v = ev.calibrate(keep["raw_v"], keep["cal"])
    seeds = [ev._Ranked(y_t, keep["raw_t"]).metrics()[0]]
    if spec.rounds > 1:
        for off in EXTRA_SEEDS:
            b = train.train(spec, final.train, seed=train.SEED + off)
            seeds.append(ev._Ranked(y_t, b.inplace_predict(final.test.X)).metrics()[0])
    metrics = {
        "walk_forward": rows,
        # the paired gains over the rivals, averaged over the folds (each resampled alone)
        "gain_over_folds": {
            f"pr_auc_gain_vs_{r}": ev.mean_gain([d[("model", r)] for d in draws])
            for r in ("rv_60s", "best_feature", "logistic")
        },
        "seeds": {
            "test_pr_auc": [round(s, 4) for s in seeds],
            "note": "final fold trained with seeds SEED, SEED+1, SEED+2 (uncalibrated)",
        },
        "calibration": {
            "method": choice["method"],
            "window": choice["window"],
            "fitted_on": cchoice.WINDOW_TEXT[choice["window"]],
            "chosen_by": "lowest mean out-of-sample ECE over the walk-forward folds among "
            f"candidates losing at most {cchoice.PR_AUC_NOISE} PR-AUC on any fold",
            "candidates": choice["candidates"],
            "test_ece_trees": round(ev.ece(keep["raw_t"], y_t), 4),
            "test_ece_calibrated": round(ev.ece(p_t, y_t), 4),
            "reliability_deciles_calibrated": ev.reliability_deciles(p_t, y_t),
            "test_brier_trees": ev.brier(keep["raw_t"], y_t),
            "test_brier_calibrated": ev.brier(p_t, y_t),
            "test_brier_base_rate": ev.brier(np.full(len(y_t), y_v.mean()), y_t),
            "reliability_trees": ev.reliability(keep["raw_t"], y_t),
            "reliability_calibrated": ev.reliability(p_t, y_t),
        },
        "alert_rate": {
            "target": train.ALERT_RATE,
            "validation": round(float((p_v >= keep["thr"]).mean()), 4),
            "test": round(float((p_t >= keep["thr"]).mean()), 4),
        },
        "train_rows": len(final.train),
    }
    if spec.compare_labels:
        metrics["label_choice"] = _label_choice(spec, ds, rows)
    return metrics, keep


def build_artifact(spec: train.ModelSpec, ds: dataset.Dataset, out_root: Path) -> Manifest:
    metrics, keep = evaluate_spec(spec, ds)
    booster: xgb.Booster = keep["booster"]
    final = ds.final
    folder = out_root / spec.name
    tmp = out_root / f".{spec.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    booster.save_model(tmp / XGB_MODEL_FILE)
    rng = np.random.default_rng(train.SEED)
    n = len(final.train)
    ann = final.train.X[rng.choice(n, min(ANNOTATE_ROWS, n), replace=False)]
    cc.compile_library(cc.to_treelite(booster), tmp / LIBRARY_FILE, annotate_rows=ann)
    ref_idx = np.sort(rng.choice(n, min(REFERENCE_ROWS, n), replace=False))
    ref_x = final.train.X[ref_idx]
    pd.DataFrame(ref_x, columns=list(FEATURE_NAMES)).to_parquet(tmp / REFERENCE_FILE, index=False)
    (tmp / REFERENCE_RAW_FILE).write_bytes(ref_x.astype("<f4").tobytes())
    ref_p = ev.calibrate(booster.inplace_predict(ref_x), keep["cal"])
    drift_bins = {
        "features": {n: b.to_json() for n, b in bins.fit_all(ref_x, FEATURE_NAMES).items()},
        "prediction": bins.fit(ref_p).to_json(),
    }
    manifest = Manifest(
        name=spec.name,
        description=spec.description,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        feature_names=FEATURE_NAMES,
        decision_threshold=keep["thr"],
        library=LIBRARY_FILE,
        library_sha256=sha256_bytes((tmp / LIBRARY_FILE).read_bytes()),
        versions=versions(),
        compile_options={**cc.DEFAULT_OPTIONS, "cflags": list(cc.CFLAGS)},
        label={
            "definition": "realised volatility of the symbol's next 60 s, in units of its "
            "own last-5-minute level scaled to 60 s, above the threshold",
            "horizon_ms": dataset.HORIZON_MS,
            "train_quantile": dataset.SPIKE_QUANTILE,
            "threshold": final.label_threshold,
            "warm_up_ms": WARMUP_MS,
        },
        data_period={
            "source": ds.source,
            "train": final.train.period,
            "validation": final.valid.period,
            "test": final.test.period,
        },
        metrics=metrics,
        params={
            "xgboost": spec.params,
            "rounds": spec.rounds,
            "uses": list(spec.uses),
            "train_tail": spec.train_tail,
            **(
                {"logistic": json.loads(booster.attr("logistic") or "{}")}
                if spec.kind == linear.KIND
                else {}
            ),
        },
        drift=drift_bins,
        calibration=keep["cal"],
        trained_on=TRAINED_ON[spec.data],
    )
    manifest = dataclasses.replace(manifest, scope=scope.sentence(manifest))
    manifest.write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="where artifact folders go")
    parser.add_argument("--only", nargs="*", help="build only these artifact names")
    parser.add_argument("--doc", type=Path, default=report.DOC, help="model report to write")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    data: dict[str, dataset.Dataset] = {}
    for spec in train.SPECS:
        if args.only and spec.name not in args.only:
            continue
        if spec.data not in data:
            data[spec.data] = dataset.build() if spec.data == "es" else dataset.synthetic()
        m = build_artifact(spec, data[spec.data], args.out)
        print(report.table(m), flush=True)
    if args.out == ROOT and not args.only:
        report.write(args.out, args.doc)
        print(f"wrote {args.doc}")


if __name__ == "__main__":
    main()
