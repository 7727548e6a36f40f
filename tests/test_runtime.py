from __future__ import annotations

import gc
import os
import threading

import numpy as np
import pytest
import xgboost as xgb

from compiled_models import runtime
from market.features import N_FEATURES as W
from tests.conftest import ARTIFACTS, artifact_dir


@pytest.fixture(scope="module")
def model() -> runtime.CompiledModel:
    return runtime.load(artifact_dir("xgb-v2"))


def test_several_threads_predict_exactly(model, real_dataset):
    x = real_dataset.test.X[:20_000]
    want = model.predict(x)
    errors: list[str] = []

    def worker(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(200):
            lo = int(rng.integers(0, len(x) - 64))
            n = int(rng.integers(1, 64))
            got = model.predict(x[lo : lo + n])
            if not np.array_equal(got, want[lo : lo + n]):
                errors.append(f"thread {seed} rows {lo}:{lo + n}")
        big = model.predict(x)
        if not np.array_equal(big, want):
            errors.append(f"thread {seed} full batch")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors


def test_artifacts_loaded_side_by_side_keep_their_own_code(real_dataset):
    x = real_dataset.test.X[:2_000]
    models = {name: runtime.load(artifact_dir(name)) for name in ARTIFACTS}
    again = runtime.load(artifact_dir(ARTIFACTS[0]))  # reload while the others are alive
    for name, m in models.items():
        ref = xgb.Booster(model_file=str(artifact_dir(name) / "model.json"))
        np.testing.assert_allclose(m.predict_raw(x), ref.inplace_predict(x), atol=1e-6)
    np.testing.assert_array_equal(again.predict(x), models[ARTIFACTS[0]].predict(x))


def test_reloading_many_times_frees_libraries(real_dataset):
    x = real_dataset.test.X[:100]
    want = runtime.load(artifact_dir("xgb-v1")).predict(x)
    gc.collect()
    fds_before = len(os.listdir("/proc/self/fd"))
    for _ in range(50):
        np.testing.assert_array_equal(runtime.load(artifact_dir("xgb-v1")).predict(x), want)
    gc.collect()
    # each load holds a memfd while its library is mapped; dropped models must release both
    assert len(os.listdir("/proc/self/fd")) <= fds_before + 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((2, W - 1), np.float32), f"expected {W} features per row, got {W - 1}"),
        (np.zeros((2, W + 1), np.float32), f"expected {W} features per row, got {W + 1}"),
        (np.zeros((2, W), np.float64), "got dtype float64"),
        (np.zeros((2, W), np.int32), "got dtype int32"),
        (np.zeros((0, W), np.float32), "empty array"),
        (np.zeros(W, np.float32), "got 1 dimension"),
        (np.zeros((2, 2 * W), np.float32)[:, ::2], "non-contiguous"),
        (np.zeros((W, 2), np.float32).T, "non-contiguous"),
        ([[0.0] * W], "got list"),
    ],
)
def test_bad_input_gets_a_clear_error(model, bad, message):
    with pytest.raises(runtime.InvalidInput, match=message):
        model.predict(bad)


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_infinity_is_rejected_with_its_row(model, real_dataset, value):
    x = real_dataset.test.X[:5].copy()
    x[3, 6] = value
    with pytest.raises(runtime.InvalidInput, match="row 3 contains an infinite value"):
        model.predict(x)


def test_all_missing_row_matches_xgboost(model):
    x = np.full((1, W), np.nan, np.float32)
    ref = xgb.Booster(model_file=str(artifact_dir("xgb-v2") / "model.json"))
    assert model.predict_raw(x)[0] == pytest.approx(float(ref.inplace_predict(x)[0]), abs=1e-6)
