"""Open Inference Protocol with the real tritonclient[grpc] package as the client."""

from __future__ import annotations

import re

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from compiled_models import runtime
from market.features import N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess, artifact_dir


@pytest.fixture(scope="module")
def client(server):
    c = tc.InferenceServerClient(url=server.address)
    yield c
    c.close()


def infer(client, x: np.ndarray, model: str = "xgb-v2", outputs=None, version: str = ""):
    inp = tc.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # sent as raw_input_contents
    req_out = [tc.InferRequestedOutput(n) for n in outputs] if outputs else None
    return client.infer(model, [inp], model_version=version, outputs=req_out)


def test_server_and_model_readiness(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("xgb-v2") and client.is_model_ready("baseline-rv60")
    assert not client.is_model_ready("no-such-model")
    meta = client.get_model_metadata("xgb-v2", as_json=True)
    assert meta["inputs"][0]["shape"] == ["-1", str(N_FEATURES)]
    assert {o["name"] for o in meta["outputs"]} == {"probability", "label"}


@pytest.mark.parametrize("model", ["xgb-v2", "xgb-v1", "baseline-rv60"])
def test_model_infer_equals_compiled_model(client, real_dataset, model):
    x = np.ascontiguousarray(real_dataset.test.X[:1_000])
    res = infer(client, x, model)
    want = runtime.load(artifact_dir(model)).predict(x)
    np.testing.assert_array_equal(res.as_numpy("probability"), want)
    thr = runtime.load(artifact_dir(model)).threshold
    np.testing.assert_array_equal(res.as_numpy("label"), want >= thr)
    assert res.get_response().model_name == model
    assert res.get_response().model_version == model  # the artifact's name


def test_the_model_name_serves_the_active_artifact_and_a_version_pins_one(client, real_dataset):
    """The served model's name (config model_name, default "volspike") stays while the
    artifact behind it changes; model_version names (and pins) the artifact."""
    x = np.ascontiguousarray(real_dataset.test.X[:200])
    for name, version, artifact in [
        ("volspike", "", "xgb-v2"),
        ("volspike", "xgb-v1", "xgb-v1"),
        ("volspike", "xgb-v2", "xgb-v2"),
        ("", "baseline-rv60", "baseline-rv60"),
        ("xgb-v1", "xgb-v1", "xgb-v1"),
    ]:
        res = infer(client, x, name, version=version).get_response()
        assert res.model_name == ("volspike" if name in ("", "volspike") else name)
        assert res.model_version == artifact
        want = runtime.load(artifact_dir(artifact)).predict(x)
        got = np.frombuffer(res.raw_output_contents[0], "<f4")
        np.testing.assert_array_equal(got, want)


def test_readiness_and_metadata_by_model_name_and_version(client):
    assert client.is_model_ready("volspike")
    assert client.is_model_ready("volspike", "xgb-v1")
    assert client.is_model_ready("xgb-v1", "xgb-v1")
    assert not client.is_model_ready("volspike", "xgb-v9")
    assert not client.is_model_ready("xgb-v1", "xgb-v2")  # an artifact has one version
    meta = client.get_model_metadata("volspike", as_json=True)
    assert meta["name"] == "volspike"
    assert meta["versions"] == ["xgb-v2", "baseline-rv60", "xgb-v1"]  # active first
    meta = client.get_model_metadata("volspike", "xgb-v1", as_json=True)
    assert (meta["name"], meta["versions"]) == ("volspike", ["xgb-v1"])
    meta = client.get_model_metadata("baseline-rv60", as_json=True)
    assert (meta["name"], meta["versions"]) == ("baseline-rv60", ["baseline-rv60"])
    with pytest.raises(InferenceServerException, match="has no servable version 'xgb-v9'"):
        client.get_model_metadata("volspike", "xgb-v9")


def test_a_version_that_is_not_served_is_not_found(client):
    x = np.zeros((1, N_FEATURES), np.float32)
    want = (
        "model 'volspike' has no servable version 'xgb-v9'; "
        "servable: ['baseline-rv60', 'xgb-v1', 'xgb-v2']"
    )
    with pytest.raises(InferenceServerException, match=re.escape(want)):
        infer(client, x, "volspike", version="xgb-v9")
    with pytest.raises(InferenceServerException, match="model 'xgb-v1' has no servable version"):
        infer(client, x, "xgb-v1", version="xgb-v2")


def test_an_output_requested_twice_is_refused(client):
    """Each output is answered once (a repeat would multiply the response); per output in
    request order: unknown, then seen before. Mutation (seen failing for the Python server):
    drop the ``seen`` check in InferenceService._decode."""
    x = np.zeros((1, N_FEATURES), np.float32)
    unknown = "outputs: unknown output '{}'; this model has ['label', 'probability']"
    for outputs, message in [
        (["label", "label"], "outputs: 'label' is requested more than once"),
        (["probability", "label", "probability"], "outputs: 'probability' is requested more"),
        (["label", "label", "nope"], "outputs: 'label' is requested more than once"),
        (["label", "nope", "label"], unknown.format("nope")),
        (["n" * 100, "n" * 100], unknown.format("n" * 32 + "...")),
    ]:
        with pytest.raises(InferenceServerException, match=re.escape(message)) as exc:
            infer(client, x, outputs=outputs)
        assert exc.value.status() == "StatusCode.INVALID_ARGUMENT"
    # outputs are checked before the inputs
    with pytest.raises(InferenceServerException, match="'label' is requested more than once"):
        client.infer("xgb-v2", [], outputs=[tc.InferRequestedOutput("label")] * 2)


def test_requested_output_only(client, real_dataset):
    res = infer(client, real_dataset.test.X[:5].copy(), outputs=["label"])
    assert res.as_numpy("probability") is None
    assert res.as_numpy("label").shape == (5,)


def test_bad_shapes_and_types_name_the_field(client):
    bad_shape = rf"shape is \[2, {N_FEATURES - 1}\]; expected"
    with pytest.raises(InferenceServerException, match=bad_shape):
        infer(client, np.zeros((2, N_FEATURES - 1), np.float32))
    inp = tc.InferInput("features", [2, N_FEATURES], "FP64")
    inp.set_data_from_numpy(np.zeros((2, N_FEATURES), np.float64))
    with pytest.raises(InferenceServerException, match="datatype is 'FP64'; expected 'FP32'"):
        client.infer("xgb-v2", [inp])
    with pytest.raises(InferenceServerException, match="model 'nope' is not served"):
        infer(client, np.zeros((1, N_FEATURES), np.float32), model="nope")


def test_a_configured_model_name_is_the_one_served(tmp_path, impl):
    srv = ServerProcess(tmp_path, impl=impl)
    tmp_path.mkdir(parents=True, exist_ok=True)
    srv.model_config.write_text(
        'artifact = "xgb-v2"\nservable = ["xgb-v1"]\nmodel_name = "btc-vol"\n'
    )
    srv.start()
    try:
        c = tc.InferenceServerClient(url=srv.address)
        assert c.is_model_ready("btc-vol") and c.is_model_ready("btc-vol", "xgb-v1")
        assert not c.is_model_ready("volspike")
        meta = c.get_model_metadata("btc-vol", as_json=True)
        assert (meta["name"], meta["versions"]) == ("btc-vol", ["xgb-v2", "xgb-v1"])
        res = infer(c, np.zeros((1, N_FEATURES), np.float32), "btc-vol").get_response()
        assert (res.model_name, res.model_version) == ("btc-vol", "xgb-v2")
        c.close()
        with grpc.insecure_channel(srv.address) as ch:
            info = pb_grpc.PredictorStub(ch).ModelInfo(pb.ModelInfoRequest(model="btc-vol"))
        assert (info.model_name, info.artifact) == ("btc-vol", "xgb-v2")
    finally:
        assert srv.stop() == 0
