"""The manifest's calibration: validated on load, applied after the compiled trees.

The Go server has the same cases (server/native/calibration_test.go). Mutation: return
``predict_raw`` from ``CompiledModel.predict`` and the calibrated test fails; drop the
y-monotone check and the "y must be non-decreasing" case fails."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from compiled_models import calibration, runtime
from tests.conftest import artifact_dir

ISO = {"method": "isotonic"}
INVALID = [
    ({**ISO, "x": [0, 0.5, 1], "y": [0, 0.6, 0.4]}, "y must be non-decreasing"),
    ({**ISO, "x": [0, 0.5, 0.5], "y": [0, 0.5, 1]}, "x must be strictly increasing"),
    ({**ISO, "x": [0, 0.7, 0.5], "y": [0, 0.5, 1]}, "x must be strictly increasing"),
    ({**ISO, "x": [0.5], "y": [0.5]}, "same length >= 2, got 1 and 1"),
    ({**ISO, "x": [0, 1], "y": [0, 0.5, 1]}, "same length >= 2, got 2 and 3"),
    ({**ISO, "x": [0, 1], "y": [0, 1.5]}, r"y must lie within \[0, 1\]"),
    ({**ISO, "x": [0, 1], "y": [-0.1, 1]}, r"y must lie within \[0, 1\]"),
    ({**ISO, "x": [0, float("nan")], "y": [0, 1]}, "x must be finite"),
    ({**ISO, "x": [0, 1], "y": [0, float("inf")]}, "y must be finite"),
    ({**ISO, "x": [0, "1"], "y": [0, 1]}, "x must be a list of numbers"),
    ({**ISO, "x": [0, 1]}, "exactly the keys method, x, y"),
    ({**ISO, "x": [0, 1], "y": [0, 1], "extra": True}, "exactly the keys method, x, y"),
    ({"method": "platt", "a": 1, "b": 0}, "exactly the keys method, x, y"),
    ({"method": "logistic", "x": [0, 1], "y": [0, 1]}, "method must be 'isotonic' or 'platt'"),
    ({"x": [0, 1], "y": [0, 1]}, "method must be 'isotonic' or 'platt'"),
    ([0, 1], "calibration must be an object"),
    (None, "calibration must be an object"),
]


@pytest.mark.parametrize(("doc", "message"), INVALID)
def test_an_invalid_calibration_is_refused(doc, message):
    with pytest.raises(ValueError, match=message):
        calibration.parse(doc)


def test_interpolation_clamps_at_both_ends():
    iso = calibration.parse({**ISO, "x": [0.1, 0.3, 0.5, 0.9], "y": [0.0, 0.2, 0.2, 1.0]})
    p = np.array([0, 0.05, 0.1, 0.2, 0.25, 0.3, 0.4, 0.7, 0.8, 0.9, 0.95, 1], np.float32)
    want = [0, 0, 0, 0.1, 0.15, 0.2, 0.2, 0.6, 0.8, 1, 1, 1]
    got = iso.apply(p)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


def copy_with(tmp_path, name: str, **fields):
    folder = tmp_path / name
    shutil.copytree(artifact_dir("xgb-v2"), folder)
    doc = json.loads((folder / "manifest.json").read_text())
    doc.update(name=name, **fields)
    (folder / "manifest.json").write_text(json.dumps(doc))
    return folder


def test_a_calibrated_artifact_returns_calibrated_probabilities(tmp_path, real_dataset):
    knots = {**ISO, "x": [0, 0.01, 0.1, 0.5, 1], "y": [0.05, 0.1, 0.3, 0.35, 0.9]}
    model = runtime.load(copy_with(tmp_path, "calibrated", calibration=knots, trained_on="ticks"))
    x = real_dataset.test.X[:2_000]
    raw = model.predict_raw(x)
    np.testing.assert_array_equal(raw, runtime.load(artifact_dir("xgb-v2")).predict_raw(x))
    want = np.interp(raw.astype(np.float64), knots["x"], knots["y"]).astype(np.float32)
    got = model.predict(x)
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, raw)
    assert model.manifest.trained_on == "ticks"


def test_an_artifact_with_a_bad_calibration_is_refused(tmp_path):
    folder = copy_with(tmp_path, "badcal", calibration={**ISO, "x": [0, 1], "y": [1, 0]})
    with pytest.raises(runtime.ArtifactError, match=r"^artifact badcal: calibration y must be"):
        runtime.load(folder)


def test_the_small_batch_path_equals_np_interp_bit_for_bit():
    """Batches of up to SMALL rows are mapped in Python (one-row calls would otherwise pay
    numpy's overhead twice): every value, knots and both clamps included, must equal the
    large-batch np.interp path exactly."""
    rng = np.random.default_rng(3)
    x = np.sort(rng.random(40)).tolist()
    y = np.sort(rng.random(40)).tolist()
    iso = calibration.parse({**ISO, "x": x, "y": y})
    p = np.concatenate([rng.random(5_000), x, [0.0, 1.0, -1.0, 2.0]]).astype(np.float32)
    want = iso.apply(p.copy())  # > SMALL rows: np.interp
    got = np.concatenate([iso.apply(p[i : i + 1].copy()) for i in range(len(p))])
    np.testing.assert_array_equal(got, want)


def test_small_batches_do_not_write_into_the_callers_array():
    iso = calibration.parse({**ISO, "x": [0.0, 1.0], "y": [0.2, 0.8]})
    p = np.array([0.5, 0.25], np.float32)
    out = iso.apply(p)
    assert p.tolist() == [0.5, 0.25] and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([0.5, 0.35], np.float32))


def test_a_one_class_validation_block_refuses_to_calibrate():
    """A constant map would flag every test row (threshold 0) or none: the build must stop."""
    from compiled_models import evaluate

    p = np.random.default_rng(0).random(500).astype(np.float32)
    for method in ("isotonic", "platt"):
        with pytest.raises(ValueError, match="fitting rows have only label 0"):
            evaluate.fit_calibration(p, np.zeros(500, np.int8), method)
    with pytest.raises(ValueError, match="NaN"):
        evaluate.threshold_for_rate(np.array([0.1, np.nan]), 0.05)
