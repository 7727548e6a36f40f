"""A real scrape (OpenMetrics) shows histograms, counters by code and an exemplar."""

from __future__ import annotations

import contextlib

import grpc
import numpy as np
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from market.features import N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc


def samples(text: str) -> dict:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append(s)
    return out


def value(ss, name, **labels) -> float:
    return sum(
        s.value for s in ss.get(name, []) if all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_scrape_shows_latency_counters_rows_and_exemplar(server, channel, real_dataset):
    stub = pb_grpc.PredictorStub(channel)
    before = samples(server.metrics_text())
    x = real_dataset.test.X[:250]
    packed = pb.PackedRows(float32_le=x.astype("<f4").tobytes(), num_features=N_FEATURES)
    for _ in range(3):
        stub.Predict(pb.PredictRequest(packed=packed))
    with contextlib.suppress(grpc.RpcError):
        stub.Predict(pb.PredictRequest(rows=[pb.Row(features={"x": 1.0})]))
    after = samples(server.metrics_text())

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("volspike_rpc_requests_total", method="Predict", code="OK") == 3
    assert delta("volspike_rpc_requests_total", method="Predict", code="INVALID_ARGUMENT") == 1
    assert delta("volspike_rpc_errors_total", code="INVALID_ARGUMENT", type="InvalidArgument") == 1
    assert (
        delta("volspike_rpc_duration_seconds_count", method="Predict", artifact="xgb-v2", code="OK")
        == 3
    )
    assert delta("volspike_rows_per_call_sum", method="Predict") == 750
    assert delta("volspike_predictions_total", artifact="xgb-v2") == 750
    assert delta("volspike_predicted_probability_count", artifact="xgb-v2") == 750
    assert value(after, "volspike_active_model_info", artifact="xgb-v2") == 1
    assert value(after, "volspike_serving") == 1
    assert value(after, "volspike_model_load_duration_seconds_count", result="ok") >= 1
    buckets = [
        s
        for s in after["volspike_rpc_duration_seconds_bucket"]
        if s.labels["method"] == "Predict" and s.labels["code"] == "OK"
    ]
    assert {s.labels["le"] for s in buckets} >= {"0.0001", "0.00025", "0.0005"}
    exemplars = [s.exemplar for s in buckets if s.exemplar is not None]
    assert exemplars and all(len(e.labels["trace_id"]) == 32 for e in exemplars)
    probs = np.array(
        [
            s.value
            for s in after["volspike_predicted_probability_bucket"]
            if s.labels["artifact"] == "xgb-v2"
        ]
    )
    assert np.all(np.diff(probs) >= 0)  # cumulative buckets


def test_batch_histogram_matches_prometheus_histogram():
    from prometheus_client import CollectorRegistry, Histogram

    from server.contract_gen import PREDICTED_PROBABILITY
    from telemetry.histogram import BatchHistogram

    reg = CollectorRegistry()
    edges = PREDICTED_PROBABILITY.buckets
    ours = BatchHistogram("ours", "doc", edges, reg, label="a")
    ref = Histogram("ref", "doc", ["a"], buckets=edges, registry=reg)
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.random(500), np.array(edges), [0.0, 1.0]]).astype(np.float32)
    ours.observe_batch(values[:300], "x")
    for i in range(300, len(values)):
        ours.observe_batch(values[i : i + 1], "x")  # the one-value path
    for v in values:
        ref.labels("x").observe(float(v))
    assert [
        reg.get_sample_value("ours_bucket", {"a": "x", "le": le})
        for le in [*map(str, edges), "+Inf"]
    ] == [
        reg.get_sample_value("ref_bucket", {"a": "x", "le": le})
        for le in [*map(str, edges), "+Inf"]
    ]
    assert reg.get_sample_value("ours_sum", {"a": "x"}) == pytest.approx(
        reg.get_sample_value("ref_sum", {"a": "x"}), rel=1e-6
    )


def test_predict_outcome_series_exist_at_zero_before_any_call(tmp_path, impl):
    """Every Predict code and error kind of the contract is exported at 0 from the start
    (both servers): a series born at its first failure hides that failure from rate(), and
    the errors SLI missed a first burst of a new code. Mutation: drop the loop in either
    server's metrics and this fails."""
    from server import contract_gen as c
    from tests.conftest import ServerProcess
    from tools.procs import scrape

    srv = ServerProcess(tmp_path / "fresh", impl=impl).start()
    try:
        m = scrape(srv.metrics_port)
    finally:
        srv.stop()
    for kind, code in c.KIND_CODES:
        assert m[f'volspike_rpc_requests_total{{code="{code}",method="Predict"}}'] == 0
        assert m[f'volspike_rpc_errors_total{{code="{code}",method="Predict",type="{kind}"}}'] == 0
    assert m['volspike_rpc_requests_total{code="OK",method="Predict"}'] == 0
