"""``python -m compiled_models.compile_options``: which TL2cgen options make it faster.

Builds the same booster with each option set, checks it still matches XGBoost, and
times compile seconds, one-row latency and batch-10,000 rows/s (one thread, median of
repeats), all in one run. The winner becomes ``compile.DEFAULT_OPTIONS``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import xgboost as xgb

from compiled_models import compile as cc
from compiled_models import dataset, runtime
from compiled_models.bench import time_call
from compiled_models.manifest import Manifest, sha256_bytes

ROOT = Path(__file__).resolve().parent
_P = {**cc.DEFAULT_OPTIONS, "opt": "-O3"}
VARIANTS = {
    "-O3, one translation unit": {**_P, "parallel_comp": 0},
    f"-O3, parallel_comp={cc.CORES}": _P,
    "-O3, quantize": {**_P, "quantize": 1},
    "-O3, annotate_branch": {**_P, "annotate": True},
    "-O3, annotate_branch+quantize": {**_P, "annotate": True, "quantize": 1},
    "-O2": {**_P, "opt": "-O2"},
    "-O1": {**_P, "opt": "-O1"},
    "-Os": {**_P, "opt": "-Os"},
    "-Os, annotate_branch": {**_P, "opt": "-Os", "annotate": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="xgb-v2")
    parser.add_argument("--only", nargs="*", help="variant labels to run")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    ds = dataset.build()
    src = ROOT / args.model
    booster = xgb.Booster(model_file=str(src / "model.json"))
    tl_model = cc.to_treelite(booster)
    held_out = np.concatenate([ds.valid.X, ds.test.X])
    want = booster.inplace_predict(held_out)
    X = ds.test.X[:10_000]
    rng = np.random.default_rng(0)
    ann = ds.train.X[rng.choice(len(ds.train.y), 50_000, replace=False)]
    print(f"model {args.model}; 1 thread; median of {args.repeats} repeats")
    print(
        "| options | compile s | held-out rows off by > 1e-6 (max diff) | 1 row: us "
        "| batch 10,000: rows/s |"
    )
    print("|---|---:|---:|---:|---:|")
    base = Manifest.read(src)
    for label, opts in VARIANTS.items():
        if args.only and label not in args.only:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / args.model
            folder.mkdir()
            t0 = time.perf_counter()
            cc.compile_library(tl_model, folder / "model.so", options=opts, annotate_rows=ann)
            compile_s = time.perf_counter() - t0
            sha = sha256_bytes((folder / "model.so").read_bytes())
            Manifest(**{**base.__dict__, "library_sha256": sha}).write(folder)
            model = runtime.load(folder)
            # both paths checked (the AVX-512 layout where it fits, and TL2cgen's code);
            # timed: TL2cgen's code, the code these options change
            err = np.maximum(
                np.abs(model.predict_raw(held_out) - want),
                np.abs(model.predict_raw(held_out, portable=True) - want),
            )
            diff = f"{int((err > 1e-6).sum())} of {len(err):,} ({err.max():.1e})"

            def one_row(m: runtime.CompiledModel = model) -> np.ndarray:
                return m.predict_raw(X[:1], portable=True)

            def all_rows(m: runtime.CompiledModel = model) -> np.ndarray:
                return m.predict_raw(X, portable=True)

            one = time_call(one_row, 0.3, args.repeats)
            big = time_call(all_rows, 0.3, args.repeats)
            cells = f"{compile_s:.1f} | {diff} | {one * 1e6:.2f} | {1e4 / big:,.0f}"
            print(f"| {label} | {cells} |")


if __name__ == "__main__":
    main()
