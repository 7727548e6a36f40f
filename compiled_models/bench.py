"""``make bench-model``: one-row latency and rows/s of four ways to run the same trees.

All in one process and one run, every engine on ONE thread, on real held-out rows:
our runtime (TL2cgen C + batch entry point, and the AVX-512 layout of
``forest_simd.c`` for batches where the trees fit it), the same library's TL2cgen code
alone, TL2cgen's own ``Predictor``, Treelite
GTIL, and XGBoost ``inplace_predict``. Each figure is the median of ``--repeats``
timed repeats; each repeat runs as many calls as fit in ``--budget`` seconds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tl2cgen
import treelite
import xgboost as xgb

from compiled_models import compile as cc
from compiled_models import dataset, runtime

ROOT = Path(__file__).resolve().parent
BATCHES = (1, 100, 10_000)


def time_call(fn: Callable[[], object], budget: float, repeats: int) -> float:
    """Median seconds per call over ``repeats`` repeats of ~``budget`` seconds each."""
    fn()  # warm up
    t0 = time.perf_counter()
    fn()
    per_call = max(time.perf_counter() - t0, 1e-7)
    n = max(1, int(budget / per_call))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter() - t0) / n)
    return statistics.median(samples)


def engines(name: str, tmp: Path) -> dict[str, Callable[[np.ndarray], object]]:
    folder = ROOT / name
    ours = runtime.load(folder)
    booster = xgb.Booster(model_file=str(folder / "model.json"))
    booster.set_param({"nthread": 1})
    tl_model = treelite.frontend.from_xgboost(booster)
    tl2_lib = tmp / "tl2cgen_predictor.so"
    tl2cgen.export_lib(tl_model, toolchain=cc.CC, libpath=str(tl2_lib), params={}, nthread=cc.CORES)
    predictor = tl2cgen.Predictor(str(tl2_lib), nthread=1)
    return {
        "ours (runtime.predict)": ours.predict,
        "ours, trees only (predict_raw)": ours.predict_raw,
        "ours, TL2cgen code only (portable)": lambda x: ours.predict_raw(x, portable=True),
        "TL2cgen Predictor": lambda x: predictor.predict(tl2cgen.DMatrix(x, dtype="float32")),
        "Treelite GTIL": lambda x: treelite.gtil.predict(tl_model, x, nthread=1),
        "XGBoost inplace_predict": booster.inplace_predict,
    }


def table_simd(name: str) -> bool:
    return runtime.load(ROOT / name).simd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="xgb-v2")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per repeat")
    args = parser.parse_args()
    X = dataset.build().test.X
    with tempfile.TemporaryDirectory() as tmp:
        table = engines(args.model, Path(tmp))
        results: dict[tuple[str, int], float] = {}
        for label, fn in table.items():
            for b in BATCHES:
                x = np.ascontiguousarray(X[:b])

                def call(fn: Callable[[np.ndarray], object] = fn, x: np.ndarray = x) -> object:
                    return fn(x)

                results[label, b] = time_call(call, args.budget, args.repeats)
    print(f"model {args.model}; 1 thread per engine; median of {args.repeats} repeats")
    print("| engine | 1 row: us/call | batch 100: rows/s | batch 10,000: rows/s |")
    print("|---|---:|---:|---:|")
    for label in table:
        one = results[label, 1] * 1e6
        r100 = 100 / results[label, 100]
        r10k = 10_000 / results[label, 10_000]
        print(f"| {label} | {one:,.1f} | {r100:,.0f} | {r10k:,.0f} |")
    xgb_one = results["XGBoost inplace_predict", 1]
    ours_one = results["ours (runtime.predict)", 1]
    ours_10k = results["ours (runtime.predict)", 10_000]
    ratio_10k = results["XGBoost inplace_predict", 10_000] / ours_10k
    print(f"one row: ours is {xgb_one / ours_one:,.0f}x faster than XGBoost inplace_predict")
    print(f"batch 10,000 rows/s: ours / XGBoost = {ratio_10k:,.2f}x")
    portable_10k = results["ours, TL2cgen code only (portable)", 10_000]
    layout = "AVX-512 layout" if table_simd(args.model) else "no AVX-512 layout (TL2cgen only)"
    ratio = portable_10k / ours_10k
    print(f"batch 10,000 rows/s: ours / TL2cgen code only = {ratio:,.2f}x ({layout})")


if __name__ == "__main__":
    main()
