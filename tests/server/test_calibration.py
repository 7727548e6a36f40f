"""A calibrated artifact served by both servers: the same calibrated probabilities (the
trees' raw output through np.interp), labels against the calibrated threshold, and the
same ModelInfo, `calibrated` and `trained_on` included. Invalid calibrations are refused
by both, naming the calibration.

Proven by breaking the code: with Model.Predict returning PredictRaw's output (no
calibration in Go) the probability and differential tests fail on the native server."""

from __future__ import annotations

import json
import shutil

import grpc
import numpy as np
import pandas as pd
import pytest

from compiled_models import runtime
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import SERVER_IMPLS, ServerProcess, artifact_dir

TRAINED_ON = "E-mini S&P 500 trades, 2013-09-01 17:00 to 2013-09-03 10:21 (test copy)."
ISO = {"method": "isotonic"}
INVALID = {  # artifact name -> (calibration, words the refusal must contain)
    "cal-decreasing-y": ({**ISO, "x": [0, 0.5, 1], "y": [0, 0.6, 0.4]}, "non-decreasing"),
    "cal-x-not-increasing": ({**ISO, "x": [0, 0.7, 0.5], "y": [0, 0.5, 1]}, "strictly increasing"),
    "cal-one-knot": ({**ISO, "x": [0.5], "y": [0.5]}, "same length >= 2, got 1 and 1"),
    "cal-y-above-1": ({**ISO, "x": [0, 1], "y": [0, 1.5]}, "y must lie within [0, 1]"),
}


def reference_rows(n: int = 300) -> np.ndarray:
    ref = pd.read_parquet(artifact_dir("xgb-v2") / "reference.parquet").to_numpy(np.float32)
    return np.ascontiguousarray(ref[:n])


def knots(raw: np.ndarray) -> dict:
    """20 knots inside the raw range (so both clamps are used), a convex monotone map."""
    x = np.quantile(raw.astype(np.float64), np.linspace(0.05, 0.95, 20))
    assert (np.diff(x) > 0).all()
    y = 0.02 + 0.9 * np.linspace(0, 1, 20) ** 2
    return {**ISO, "x": x.tolist(), "y": y.tolist()}


def write_artifact(models, name: str, source: str, **fields) -> None:
    folder = models / name
    shutil.copytree(artifact_dir(source), folder)
    doc = json.loads((folder / "manifest.json").read_text())
    doc.update(name=name, **fields)
    (folder / "manifest.json").write_text(json.dumps(doc, indent=2))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    raw = runtime.load(artifact_dir("xgb-v2")).predict_raw(reference_rows())
    cal = knots(raw)
    models = tmp_path_factory.mktemp("models")
    write_artifact(models, "xgb-v2", "xgb-v2", calibration=cal, trained_on=TRAINED_ON)
    for name, (bad, _) in INVALID.items():
        write_artifact(models, name, "xgb-v1", calibration=bad)
    names = ", ".join(f'"{n}"' for n in INVALID)
    servers = {}
    for impl in SERVER_IMPLS:
        srv = ServerProcess(
            tmp_path_factory.mktemp(f"cal-{impl}"),
            impl=impl,
            env={"VOLSPIKE_MODELS_DIR": str(models)},
        )
        srv.workdir.mkdir(parents=True, exist_ok=True)
        srv.model_config.write_text(f'artifact = "xgb-v2"\nservable = [{names}]\n')
        servers[impl] = srv.start(wait_serving=False)
    for srv in servers.values():
        srv.wait_health("SERVING")
    yield servers, raw, cal
    for srv in servers.values():
        assert srv.stop() == 0


def predict(srv: ServerProcess, x: np.ndarray, model: str = "") -> pb.PredictResponse:
    req = pb.PredictRequest(
        model=model, packed=pb.PackedRows(float32_le=x.tobytes(), num_features=x.shape[1])
    )
    with grpc.insecure_channel(srv.address) as ch:
        return pb_grpc.PredictorStub(ch).Predict(req, timeout=10)


def model_info(srv: ServerProcess) -> pb.ModelInfoResponse:
    with grpc.insecure_channel(srv.address) as ch:
        return pb_grpc.PredictorStub(ch).ModelInfo(pb.ModelInfoRequest(), timeout=10)


@pytest.mark.parametrize("impl", SERVER_IMPLS)
def test_probabilities_are_the_raw_output_through_the_calibration(setup, impl):
    servers, raw, cal = setup
    resp = predict(servers[impl], reference_rows())
    got = np.array(resp.probabilities, np.float32)
    want = np.interp(raw.astype(np.float64), cal["x"], cal["y"]).astype(np.float32)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    assert (got == np.float32(cal["y"][0])).any() and (got == np.float32(cal["y"][-1])).any()
    assert np.abs(got - raw).max() > 0.05  # the calibration changes answers
    labels = np.array(resp.labels)
    assert (labels == (got >= np.float32(resp.decision_threshold))).all()
    assert 0 < labels.sum() < len(labels)


@pytest.mark.parametrize("impl", SERVER_IMPLS)
def test_model_info_says_calibrated_and_what_it_was_trained_on(setup, impl):
    info = model_info(setup[0][impl])
    assert info.calibrated is True
    assert info.trained_on == TRAINED_ON


def test_both_servers_give_the_same_bytes_for_a_calibrated_artifact(setup):
    servers = setup[0]
    answers, infos = [], []
    for srv in servers.values():
        resp = predict(srv, reference_rows())
        resp.server_compute_seconds = 0.0
        answers.append(resp.SerializeToString(deterministic=True))
        info = model_info(srv)
        info.loaded_at.Clear()
        infos.append(info)
    assert answers[0] == answers[1]
    assert infos[0] == infos[1]
    assert infos[0].calibrated and infos[0].trained_on == TRAINED_ON


@pytest.mark.parametrize("impl", SERVER_IMPLS)
@pytest.mark.parametrize("name", sorted(INVALID))
def test_an_invalid_calibration_is_refused(setup, impl, name):
    with pytest.raises(grpc.RpcError) as err:
        predict(setup[0][impl], reference_rows(2), model=name)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    details = err.value.details()
    assert f"model '{name}' is servable but not loaded" in details
    assert f"artifact {name}: calibration " in details
    assert INVALID[name][1] in details
