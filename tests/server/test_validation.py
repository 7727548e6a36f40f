"""Every bad-input class gets its status code and a message naming the field; random
and malformed requests never crash the server and never yield INTERNAL."""

from __future__ import annotations

import math

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from market.features import FEATURE_NAMES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess

GOOD = dict.fromkeys(FEATURE_NAMES, 0.001)
C = grpc.StatusCode

W = len(FEATURE_NAMES)  # the serving schema's width


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.PredictorStub(channel)


def packed(x: np.ndarray, width: int | None = None) -> pb.PackedRows:
    return pb.PackedRows(
        float32_le=x.astype("<f4").tobytes(), num_features=x.shape[1] if width is None else width
    )


def call_error(stub, req, timeout=10) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        stub.Predict(req, timeout=timeout)
    return err.value


CASES = [
    (
        "unknown feature",
        pb.PredictRequest(rows=[pb.Row(features={**GOOD, "oops": 1.0})]),
        C.INVALID_ARGUMENT,
        "rows[0].features: unknown feature(s) 'oops'",
    ),
    (
        "missing feature",
        pb.PredictRequest(rows=[pb.Row(features=GOOD), pb.Row(features={"ret_1s_z": 1.0})]),
        C.INVALID_ARGUMENT,
        "rows[1].features: missing feature(s) 'ret_5s_z'",
    ),
    (
        "infinite named value",
        pb.PredictRequest(rows=[pb.Row(features={**GOOD, "rv_60s_rel": math.inf})]),
        C.INVALID_ARGUMENT,
        "rows[0].features['rv_60s_rel'] is infinite",
    ),
    (
        "float32 overflow",
        pb.PredictRequest(rows=[pb.Row(features={**GOOD, "ret_1s_z": 1e300})]),
        C.INVALID_ARGUMENT,
        "rows[0].features['ret_1s_z'] is infinite or overflows float32",
    ),
    (
        "wrong packed width",
        pb.PredictRequest(packed=packed(np.zeros((2, W - 1)))),
        C.INVALID_ARGUMENT,
        f"packed.num_features is {W - 1}; the model expects {W}",
    ),
    (
        "ragged packed bytes",
        pb.PredictRequest(packed=pb.PackedRows(float32_le=b"\0" * 45, num_features=W)),
        C.INVALID_ARGUMENT,
        "packed.float32_le has 45 bytes, not a whole number of rows",
    ),
    (
        "infinite packed value",
        pb.PredictRequest(packed=packed(np.array([[0.0] * W, [0.0] * (W - 1) + [-np.inf]]))),
        C.INVALID_ARGUMENT,
        "packed.float32_le: row 1 contains an infinite value",
    ),
    ("empty request", pb.PredictRequest(), C.INVALID_ARGUMENT, "request has no rows"),
    (
        "empty packed",
        pb.PredictRequest(packed=pb.PackedRows(num_features=W)),
        C.INVALID_ARGUMENT,
        "packed.float32_le is empty",
    ),
    (
        "rows and packed",
        pb.PredictRequest(rows=[pb.Row(features=GOOD)], packed=packed(np.zeros((1, W)))),
        C.INVALID_ARGUMENT,
        "set either rows or packed, not both",
    ),
    (
        "too many rows",
        pb.PredictRequest(packed=packed(np.zeros((100_001, W)))),
        C.RESOURCE_EXHAUSTED,
        "packed.float32_le: 100001 rows exceed the limit of 100000",
    ),
    (
        "unknown model",
        pb.PredictRequest(model="nope", rows=[pb.Row(features=GOOD)]),
        C.NOT_FOUND,
        "model 'nope' is not served; servable: ",
    ),
]


@pytest.mark.parametrize(("name", "req", "code", "message"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_its_code_and_names_the_field(stub, name, req, code, message):
    err = call_error(stub, req)
    assert err.code() == code, err.details()
    assert message in err.details()


def test_oversize_message_is_resource_exhausted(stub):
    big = pb.PredictRequest(
        packed=pb.PackedRows(float32_le=b"\0" * (65 * 1024 * 1024), num_features=W)
    )
    err = call_error(stub, big, timeout=30)
    assert err.code() == C.RESOURCE_EXHAUSTED


def test_deadline_is_honoured(stub, impl):
    x = np.random.default_rng(0).random((100_000, W)).astype(np.float32)
    err = call_error(stub, pb.PredictRequest(packed=packed(x)), timeout=0.005)
    if impl == "native" and err.code() == C.CANCELLED:
        # grpc-go resets the stream (RST_STREAM CANCEL) the moment the deadline passes; a
        # client that reads the reset before its own timer fires reports CANCELLED.
        assert "RST_STREAM" in err.details() and "error code 8" in err.details()
    else:
        assert err.code() == C.DEADLINE_EXCEEDED


def test_nan_is_missing_not_an_error(stub):
    resp = stub.Predict(
        pb.PredictRequest(rows=[pb.Row(features=dict.fromkeys(FEATURE_NAMES, math.nan))])
    )
    assert 0.0 <= resp.probabilities[0] <= 1.0


def test_no_model_loaded_is_unavailable_then_serving_after_fix(tmp_path, impl):
    srv = ServerProcess(tmp_path, artifact="does-not-exist", impl=impl)
    srv.start(wait_serving=False)
    try:
        srv.wait_health("NOT_SERVING")
        with grpc.insecure_channel(srv.address) as ch:
            err = call_error(
                pb_grpc.PredictorStub(ch), pb.PredictRequest(rows=[pb.Row(features=GOOD)])
            )
            assert err.code() == C.UNAVAILABLE and "no model is loaded" in err.details()
            srv.model_config.write_text('artifact = "xgb-v1"\n')
            srv.wait_health("SERVING")
            resp = pb_grpc.PredictorStub(ch).Predict(
                pb.PredictRequest(rows=[pb.Row(features=GOOD)]), timeout=5
            )
            assert resp.artifact == "xgb-v1"
    finally:
        assert srv.stop() == 0


_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.sampled_from([0.0, -0.0, 1e-45, 3.5e38, -3.5e38]),
)
_names = st.one_of(st.sampled_from(FEATURE_NAMES), st.text(max_size=12))
_rows = st.lists(st.dictionaries(_names, _values, max_size=14), max_size=5).map(
    lambda rows: [pb.Row(features=r) for r in rows]
)
_requests = st.builds(
    pb.PredictRequest,
    model=st.sampled_from(["", "", "xgb-v1", "missing-model"]),
    rows=_rows,
)
_packed = st.builds(
    lambda data, width, model: pb.PredictRequest(
        model=model, packed=pb.PackedRows(float32_le=data, num_features=width)
    ),
    st.binary(max_size=400),
    st.integers(0, 20),
    st.sampled_from(["", "xgb-v1"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(req=st.one_of(_requests, _packed))
def test_fuzzed_requests_never_crash_or_return_internal(server, stub, req):
    try:
        resp = stub.Predict(req, timeout=5)
    except grpc.RpcError as err:
        assert err.code() in {C.INVALID_ARGUMENT, C.NOT_FOUND, C.RESOURCE_EXHAUSTED}, err
        assert err.details()
    else:
        assert all(0.0 <= p <= 1.0 for p in resp.probabilities)
    assert server.proc.poll() is None


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=st.binary(max_size=300))
def test_random_bytes_on_the_wire(server, channel, raw):
    call = channel.unary_unary(
        "/volatility.v1.Predictor/Predict", request_serializer=None, response_deserializer=None
    )
    try:
        call(raw, timeout=5)
    except grpc.RpcError as err:
        assert err.code() in {C.INVALID_ARGUMENT, C.NOT_FOUND, C.RESOURCE_EXHAUSTED}, err
        if err.code() == C.INVALID_ARGUMENT and "not a valid" in err.details():
            assert "volatility.v1.PredictRequest" in err.details()
    assert server.proc.poll() is None
