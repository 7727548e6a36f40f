"""XGBoost booster -> Treelite model -> TL2cgen C code -> shared library (gcc)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import tl2cgen
import treelite
import xgboost as xgb

from compiled_models import simd_layout

BATCH_C = Path(__file__).with_name("batch.c")
SIMD_C = Path(__file__).with_name("forest_simd.c")
# The SIMD layout is a few loops over tables, not thousands of branchy trees: -O3 unrolls
# its per-level loops (measured: 1.79 M rows/s vs 1.37 M at -O1 on xgb-v2).
SIMD_OPT = "-O3"
CC = os.environ.get("CC", "gcc")
CFLAGS = ("-fPIC", "-std=c99", "-fno-semantic-interposition")
CORES = len(os.sched_getaffinity(0))  # the cores this process may run on
# Chosen by `python -m compiled_models.compile_options` (docs/benchmarks.md). Quantised
# thresholds were fastest but gave wrong answers on 23 held-out rows, so they are off;
# branch annotation made no measurable difference; -O1 beat -O3 by ~10 % (smaller code
# for thousands of branchy trees) and compiles 2x faster; parallel_comp splits the code into
# translation units compiled in parallel on the cores there are. Their number is fixed, not
# the core count: the library's bytes depend on it, and an artifact must rebuild to the same
# sha256 on any machine (it was CORES: 1, 2 and 4 cores gave three hashes).
TRANSLATION_UNITS = 4
DEFAULT_OPTIONS: dict = {
    "annotate": False, "quantize": 0, "parallel_comp": TRANSLATION_UNITS, "opt": "-O1"
}  # fmt: skip


def compiler_version() -> str:
    out = subprocess.run([CC, "--version"], capture_output=True, text=True, check=True)
    return out.stdout.splitlines()[0]


def to_treelite(booster: xgb.Booster) -> treelite.Model:
    return treelite.frontend.from_xgboost(booster)


def compile_library(
    model: treelite.Model,
    out_path: Path,
    options: dict = DEFAULT_OPTIONS,
    annotate_rows=None,
) -> None:
    """Generate C for ``model`` and build ``out_path`` (a .so with ``vs_predict_batch``):
    TL2cgen's code, the batch entry point and, when the ensemble fits it, the AVX-512
    layout (``forest_simd.c``, tables from ``simd_layout``).

    ``annotate_rows`` (float32 array) feeds TL2cgen's branch annotation when
    ``options["annotate"]`` is set, so gcc lays out the likely branch first.
    """
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        params: dict = {"quantize": int(options.get("quantize", 0))}
        if options.get("parallel_comp", 0) > 1:
            params["parallel_comp"] = int(options["parallel_comp"])
        if options.get("annotate") and annotate_rows is not None:
            ann = Path(tmp) / "annotation.json"
            dmat = tl2cgen.DMatrix(annotate_rows, dtype="float32")
            tl2cgen.annotate_branch(model, dmat, ann, nthread=CORES, verbose=False)
            params["annotate_in"] = str(ann)
        tl2cgen.generate_c_code(model, str(src), params=params)
        shutil.copy(BATCH_C, src / "batch.c")
        shutil.copy(SIMD_C, src / "forest_simd.c")
        tables = (
            simd_layout.tables_header(model)
            if not params["quantize"]  # TL2cgen compares quantised indices: not the layout's
            else "#define VS_SIMD_TABLES 0 /* quantised thresholds */\n"
        )
        (src / "forest_tables.h").write_text(tables)
        objs = []
        procs = []
        for c_file in sorted(src.glob("*.c")):
            obj = c_file.with_suffix(".o")
            objs.append(obj.name)
            # relative names in the build folder: no temporary path reaches the library
            opt = SIMD_OPT if c_file.name == "forest_simd.c" else options.get("opt", "-O3")
            cmd = [CC, opt, *CFLAGS, "-c", c_file.name, "-o", obj.name]
            procs.append(subprocess.Popen(cmd, cwd=src))
            if len(procs) >= (os.cpu_count() or 2):
                _wait(procs)
        _wait(procs)
        tmp_out = Path(tmp) / "model.so"
        subprocess.run([CC, "-shared", "-o", str(tmp_out), *objs, "-lm"], check=True, cwd=src)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(tmp_out, out_path)


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"compiler failed: {p.args!r}")  # a list: same as str()
    procs.clear()
