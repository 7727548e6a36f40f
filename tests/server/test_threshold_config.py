"""The model config's decision_threshold (a refit on live scores, `make refit-threshold`)
replaces an artifact's manifest threshold in both servers alike: Predict's labels and
decision_threshold, ModelInfer's label tensor, ModelInfo and the positives counter; a
changed config applies without a restart, a removed entry gives the manifest's back, and a
bad value is refused with the old thresholds still serving."""

from __future__ import annotations

import re
import time

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc

from compiled_models import runtime
from market.features import N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import SERVER_IMPLS, ServerProcess, artifact_dir


def config(thresholds: str) -> str:
    return f'artifact = "xgb-v2"\nservable = ["xgb-v1"]\n[decision_threshold]\n{thresholds}'


@pytest.fixture(scope="module")
def rows(real_dataset) -> np.ndarray:
    return np.ascontiguousarray(real_dataset.test.X[:2_000])


@pytest.fixture(scope="module")
def probs(rows) -> dict[str, np.ndarray]:
    return {n: runtime.load(artifact_dir(n)).predict(rows) for n in ("xgb-v2", "xgb-v1")}


@pytest.fixture(scope="module")
def manifest_threshold() -> dict[str, float]:
    return {n: runtime.load(artifact_dir(n)).threshold for n in ("xgb-v2", "xgb-v1")}


@pytest.fixture(scope="module")
def both(tmp_path_factory, probs):
    # xgb-v2 at its median score: half the rows flip against the manifest's threshold
    t = float(np.median(probs["xgb-v2"]))
    servers = {}
    for impl in SERVER_IMPLS:
        srv = ServerProcess(tmp_path_factory.mktemp(f"thr-{impl}"), impl=impl)
        srv.model_config.parent.mkdir(parents=True, exist_ok=True)
        srv.model_config.write_text(config(f'"xgb-v2" = {t!r}\n'))
        servers[impl] = srv
    try:
        for srv in servers.values():
            srv.start(wait_serving=False)
        for srv in servers.values():
            srv.wait_health("SERVING")
        yield servers, t
    finally:
        for srv in servers.values():
            srv.stop()


def answers(srv: ServerProcess, rows: np.ndarray, model: str) -> dict:
    with grpc.insecure_channel(srv.address) as ch:
        stub = pb_grpc.PredictorStub(ch)
        packed = pb.PackedRows(float32_le=rows.tobytes(), num_features=N_FEATURES)
        resp = stub.Predict(pb.PredictRequest(packed=packed, model=model), timeout=10)
        info = stub.ModelInfo(pb.ModelInfoRequest(model=model), timeout=5)
    client = tc.InferenceServerClient(url=srv.address)
    try:
        inp = tc.InferInput("features", list(rows.shape), "FP32")
        inp.set_data_from_numpy(rows)
        infer = client.infer(model, [inp])
    finally:
        client.close()
    return {
        "labels": np.array(resp.labels),
        "probs": np.array(resp.probabilities, np.float32),
        "threshold": resp.decision_threshold,
        "info": info.decision_threshold,
        "kserve_labels": infer.as_numpy("label").astype(bool),
    }


def positives(srv: ServerProcess, artifact: str) -> float:
    m = re.search(
        rf'^volspike_positive_labels_total{{artifact="{artifact}"}} (\S+)$',
        srv.metrics_text(),
        re.M,
    )
    return float(m.group(1)) if m else 0.0


def check(srv, rows, probs, model: str, threshold: float) -> np.ndarray:
    t32 = np.float32(threshold)
    before = positives(srv, model)
    got = answers(srv, rows, model)
    want = probs[model] >= t32
    np.testing.assert_array_equal(got["probs"], probs[model])
    np.testing.assert_array_equal(got["labels"], want)
    np.testing.assert_array_equal(got["kserve_labels"], want)
    assert got["threshold"] == t32 and got["info"] == t32
    # one Predict and one ModelInfer of these rows
    assert positives(srv, model) - before == 2 * int(want.sum())
    return got["labels"]


def wait_threshold(srv: ServerProcess, model: str, threshold: float) -> None:
    deadline = time.monotonic() + 20
    with grpc.insecure_channel(srv.address) as ch:
        stub = pb_grpc.PredictorStub(ch)
        while time.monotonic() < deadline:
            got = stub.ModelInfo(pb.ModelInfoRequest(model=model), timeout=5).decision_threshold
            if got == np.float32(threshold):
                return
            time.sleep(0.1)
    pytest.fail(f"{srv.impl}: {model}'s threshold never became {threshold} (is {got})")


def reloads(srv: ServerProcess, result: str) -> float:
    m = re.search(
        rf'^volspike_model_reloads_total{{result="{result}"}} (\S+)$', srv.metrics_text(), re.M
    )
    return float(m.group(1)) if m else 0.0


def test_the_config_threshold_replaces_the_manifests_in_both_servers(
    both, rows, probs, manifest_threshold
):
    servers, t = both
    assert abs(np.mean(probs["xgb-v2"] >= np.float32(t)) - 0.5) < 0.01
    assert np.float32(t) != np.float32(manifest_threshold["xgb-v2"])
    labels = {}
    for impl, srv in servers.items():
        labels[impl] = check(srv, rows, probs, "xgb-v2", t)
        check(srv, rows, probs, "xgb-v1", manifest_threshold["xgb-v1"])  # no entry: manifest's
    python, native = (labels[i] for i in SERVER_IMPLS)
    np.testing.assert_array_equal(python, native)


def test_a_changed_threshold_applies_without_restart_and_a_bad_one_is_refused(
    both, rows, probs, manifest_threshold
):
    servers, _ = both
    t1 = float(np.quantile(probs["xgb-v1"], 0.8))
    for srv in servers.values():  # the file watcher: no signal
        srv.model_config.write_text(config(f"xgb-v1 = {t1!r}\n"))
    for impl, srv in servers.items():
        wait_threshold(srv, "xgb-v1", t1)
        wait_threshold(srv, "xgb-v2", manifest_threshold["xgb-v2"])  # entry removed
        check(srv, rows, probs, "xgb-v1", t1)
        check(srv, rows, probs, "xgb-v2", manifest_threshold["xgb-v2"])
        pid = srv.proc.pid
        failed = reloads(srv, "failed")
        srv.model_config.write_text(config("xgb-v1 = 1.5\n"))
        deadline = time.monotonic() + 20
        while reloads(srv, "failed") == failed and time.monotonic() < deadline:
            time.sleep(0.1)
        assert reloads(srv, "failed") == failed + 1, impl  # refused, counted
        check(srv, rows, probs, "xgb-v1", t1)  # the old threshold keeps serving
        assert srv.proc.pid == pid and srv.proc.poll() is None
        # the native server's log quotes the message (slog): \" for "
        said = r"""'decision_threshold' of \\?"xgb-v1\\?" must be a probability in \(0, 1\]"""
        assert re.search(said, srv.log.read_text()), impl
