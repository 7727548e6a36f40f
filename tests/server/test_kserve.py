"""Open Inference Protocol with the real tritonclient[grpc] package as the client."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as tc
from tritonclient.utils import InferenceServerException

from compiled_models import runtime
from market.features import N_FEATURES
from tests.conftest import artifact_dir


@pytest.fixture(scope="module")
def client(server):
    c = tc.InferenceServerClient(url=server.address)
    yield c
    c.close()


def infer(client, x: np.ndarray, model: str = "xgb-v2", outputs=None):
    inp = tc.InferInput("features", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)  # sent as raw_input_contents
    req_out = [tc.InferRequestedOutput(n) for n in outputs] if outputs else None
    return client.infer(model, [inp], outputs=req_out)


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
