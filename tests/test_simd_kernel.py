"""The AVX-512 layout (compiled_models/forest_simd.c) answers with TL2cgen's bits.

Every artifact whose trees fit the layout (depth <= 6) runs batches of 24+ rows through
it on a CPU with AVX-512F and everything else through TL2cgen's code, so a row's answer
must not depend on the path, the batch size or the row's place in the batch: compared
bit for bit on every held-out row, at every batch edge, on values sitting exactly on the
ensemble's thresholds and their float32 neighbours, and on missing values in every
feature. (Exactness against XGBoost itself is checked by the build, on the same rows.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from compiled_models import runtime
from tests.conftest import ARTIFACTS, artifact_dir

HAS_AVX512 = " avx512f" in Path("/proc/cpuinfo").read_text()


def depth(tree: dict) -> int:
    left, right = tree["left_children"], tree["right_children"]
    level = {0: 0}
    for i in range(len(left)):
        if left[i] != -1:
            level[left[i]] = level[right[i]] = level[i] + 1
    return max(level.values())


def max_depth(name: str) -> int:
    model = json.loads((artifact_dir(name) / "model.json").read_text())
    return max(map(depth, model["learner"]["gradient_booster"]["model"]["trees"]))


def thresholds(name: str) -> dict[int, np.ndarray]:
    model = json.loads((artifact_dir(name) / "model.json").read_text())
    out: dict[int, list[float]] = {}
    for tree in model["learner"]["gradient_booster"]["model"]["trees"]:
        for i, left in enumerate(tree["left_children"]):
            if left != -1:
                out.setdefault(tree["split_indices"][i], []).append(tree["split_conditions"][i])
    return {f: np.unique(np.array(v, np.float32)) for f, v in out.items()}


LAYOUT = [n for n in ARTIFACTS if max_depth(n) <= 6] if HAS_AVX512 else []


def assert_same_bits(model: runtime.CompiledModel, x: np.ndarray) -> None:
    """The layout (where the batch takes it) and TL2cgen's code answer ``x`` alike."""
    fast, portable = model.predict_raw(x), model.predict_raw(x, portable=True)
    assert np.array_equal(fast.view(np.uint32), portable.view(np.uint32))


def test_the_layout_runs_exactly_where_it_fits():
    assert HAS_AVX512, "this machine has AVX-512F: the layout must be exercised here"
    for name in ARTIFACTS:
        model = runtime.load(artifact_dir(name))
        assert model.simd == (max_depth(name) <= 6), name
    assert "xgb-v2" in LAYOUT and "crypto-v1" in LAYOUT
    assert "crypto-logit-v1" not in LAYOUT  # 9 trees of depth 11: TL2cgen's code only


@pytest.mark.parametrize("name", LAYOUT)
def test_every_held_out_row_gets_the_same_bits(name, real_dataset):
    model = runtime.load(artifact_dir(name))
    x = np.ascontiguousarray(real_dataset.test.X, dtype=np.float32)
    assert np.isnan(x).any()  # missing values included
    assert_same_bits(model, x)


@pytest.mark.parametrize("name", LAYOUT)
def test_a_rows_answer_does_not_depend_on_its_batch(name, real_dataset):
    model = runtime.load(artifact_dir(name))
    x = np.ascontiguousarray(real_dataset.test.X[:300], dtype=np.float32)
    want = model.predict_raw(x, portable=True).view(np.uint32)
    for n in (1, 2, 23, 24, 25, 63, 64, 65, 87, 88, 89, 127, 128, 129, 151, 152, 300):
        for start in (0, 7):
            got = model.predict_raw(np.ascontiguousarray(x[start : start + n]))
            assert np.array_equal(got.view(np.uint32), want[start : start + n]), (n, start)


@pytest.mark.parametrize("name", LAYOUT)
def test_values_on_and_beside_every_threshold(name):
    """Each row takes, per feature, a threshold itself or its float32 neighbour (x < t
    goes left, x >= t right: an off-by-one comparison fails here), with NaN, +-0 and
    the largest finite values mixed in."""
    model = runtime.load(artifact_dir(name))
    rng = np.random.default_rng(5)
    splits = thresholds(name)
    pools = []
    for f in range(model.n_features):
        t = splits.get(f, np.zeros(1, np.float32))
        near = np.concatenate(
            [t, np.nextafter(t, np.float32(-np.inf)), np.nextafter(t, np.float32(np.inf))]
        )
        extra = np.array([np.nan, 0.0, -0.0, 3.4e38, -3.4e38], np.float32)
        pools.append(np.concatenate([near, extra]).astype(np.float32))
    x = np.stack([rng.choice(p, 20_000) for p in pools], axis=1).astype(np.float32)
    assert_same_bits(model, x)


@pytest.mark.parametrize("name", LAYOUT)
def test_missing_in_each_feature_follows_each_nodes_default(name, real_dataset):
    model = runtime.load(artifact_dir(name))
    base = np.ascontiguousarray(real_dataset.test.X[:640], dtype=np.float32)
    base = np.where(np.isnan(base), 0.5, base).astype(np.float32)
    for f in range(model.n_features):
        x = base.copy()
        x[::2, f] = np.nan
        assert_same_bits(model, x)
    assert_same_bits(model, np.full_like(base, np.nan))


@pytest.mark.parametrize("name", LAYOUT)
@pytest.mark.parametrize(("rows", "bad"), [(200, 70), (200, 190), (200, 195), (100, 90)])
def test_an_infinite_value_is_reported_at_its_row(name, rows, bad, real_dataset):
    """Row 70 sits in a full block, 90 in a zero-padded last block (36 rows), 195 in the
    8 rows left to TL2cgen's code."""
    model = runtime.load(artifact_dir(name))
    x = np.ascontiguousarray(real_dataset.test.X[:rows], dtype=np.float32)
    x[bad, 3] = -np.inf
    with pytest.raises(runtime.InvalidInput, match=f"row {bad} contains an infinite value"):
        model.predict_raw(x)


def test_large_whole_number_leaves_add_like_tl2cgen(tmp_path):
    """TL2cgen prints a whole-number leaf below 1e16 without a decimal point: an integer
    constant, added as the float32 itself, not as the double its text denotes. A regressor
    on targets in the 1e8s has such leaves (3,577 of 100,000 rows differed by one ulp
    before the layout followed it). Built here, not shipped: also covers the identity
    postprocessor."""
    import ctypes

    import xgboost as xgb

    from compiled_models import compile as cc

    rng = np.random.default_rng(0)
    x = rng.standard_normal((5_000, 15)).astype(np.float32)
    y = x[:, 0] * 3e8 + x[:, 1] * 1e8 + 5e8 + rng.standard_normal(5_000) * 1e7
    params = {"objective": "reg:squarederror", "max_depth": 6, "nthread": 1}
    booster = xgb.train(params, xgb.DMatrix(x, y), 50)
    lib_path = tmp_path / "bigy.so"
    cc.compile_library(cc.to_treelite(booster), lib_path)
    lib = ctypes.CDLL(str(lib_path))
    assert lib.vs_simd_active() == 1
    rows = np.ascontiguousarray(rng.standard_normal((20_000, 15)).astype(np.float32))
    outs = []
    for name in ("vs_predict_batch", "vs_predict_batch_portable"):
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p], ctypes.c_int64
        out = np.empty(len(rows), np.float32)
        assert fn(rows.ctypes.data, len(rows), out.ctypes.data) == -1
        outs.append(out)
    assert np.array_equal(outs[0].view(np.uint32), outs[1].view(np.uint32))
