"""``python -m compiled_models.build``: train, compile and write every artifact.

Each artifact is a folder ``compiled_models/<name>/`` with the shared library, the
XGBoost model it was compiled from, a manifest and a reference feature sample.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import platform
import shutil
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd

from compiled_models import compile as cc
from compiled_models import dataset, train
from compiled_models.manifest import (
    LIBRARY_FILE,
    REFERENCE_FILE,
    REFERENCE_RAW_FILE,
    XGB_MODEL_FILE,
    Manifest,
    sha256_bytes,
)
from drift import bins
from market.features import FEATURE_NAMES

logger = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent
REFERENCE_ROWS = 5_000
ANNOTATE_ROWS = 50_000


def versions() -> dict:
    return {
        "xgboost": version("xgboost-cpu"),
        "treelite": version("treelite"),
        "tl2cgen": version("tl2cgen"),
        "numpy": version("numpy"),
        "compiler": cc.compiler_version(),
        "python": platform.python_version(),
    }


def build_artifact(spec: train.ModelSpec, ds: dataset.Dataset, out_root: Path) -> Manifest:
    trained = train.train(spec, ds)
    folder = out_root / spec.name
    tmp = out_root / f".{spec.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trained.booster.save_model(tmp / XGB_MODEL_FILE)
    rng = np.random.default_rng(train.SEED)
    ann = ds.train.X[rng.choice(len(ds.train.y), ANNOTATE_ROWS, replace=False)]
    cc.compile_library(cc.to_treelite(trained.booster), tmp / LIBRARY_FILE, annotate_rows=ann)
    ref_idx = np.sort(rng.choice(len(ds.train.y), REFERENCE_ROWS, replace=False))
    pd.DataFrame(ds.train.X[ref_idx], columns=list(FEATURE_NAMES)).to_parquet(
        tmp / REFERENCE_FILE, index=False
    )
    (tmp / REFERENCE_RAW_FILE).write_bytes(ds.train.X[ref_idx].astype("<f4").tobytes())
    ref_x = ds.train.X[ref_idx]
    ref_p = trained.booster.inplace_predict(ref_x)
    drift_bins = {
        "features": {n: b.to_json() for n, b in bins.fit_all(ref_x, FEATURE_NAMES).items()},
        "prediction": bins.fit(ref_p).to_json(),
    }
    manifest = Manifest(
        name=spec.name,
        description=spec.description,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        feature_names=FEATURE_NAMES,
        decision_threshold=trained.threshold,
        library=LIBRARY_FILE,
        library_sha256=sha256_bytes((tmp / LIBRARY_FILE).read_bytes()),
        versions=versions(),
        compile_options={**cc.DEFAULT_OPTIONS, "cflags": list(cc.CFLAGS)},
        label={
            "definition": "realised volatility of the next 60 s above the threshold",
            "horizon_ms": dataset.HORIZON_MS,
            "train_quantile": dataset.SPIKE_QUANTILE,
            "rv_threshold": ds.rv_threshold,
        },
        data_period={
            "source": "mlfinpy==0.1.2 tick_data.csv (E-mini S&P 500 trades)",
            "train": ds.train.period,
            "validation": ds.valid.period,
            "test": ds.test.period,
        },
        metrics=trained.metrics,
        params={
            "xgboost": spec.params,
            "rounds": spec.rounds,
            "uses": list(spec.uses),
            "train_tail": spec.train_tail,
        },
        drift=drift_bins,
    )
    manifest.write(tmp)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT, help="where artifact folders go")
    parser.add_argument("--only", nargs="*", help="build only these artifact names")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ds = dataset.build()
    for spec in train.SPECS:
        if args.only and spec.name not in args.only:
            continue
        m = build_artifact(spec, ds, args.out)
        t = m.metrics["test"]
        logger.info(
            "%s: test PR-AUC %.4f ROC-AUC %.4f threshold %.4f sha256 %s",
            m.name,
            t["pr_auc"],
            t["roc_auc"],
            m.decision_threshold,
            m.library_sha256[:12],
        )


if __name__ == "__main__":
    main()
