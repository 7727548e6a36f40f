"""The Python server in this process (create_server on 127.0.0.1:0, a real channel, a fresh
CollectorRegistry read back with get_sample_value): fast, no process started. The answers
and counters a client and a dashboard see; tests/server/test_differential.py holds the
native server to the same (slow).

Mutations, each applied once and seen failing here:
- (c) the Python server's positives counter never incremented (drop the
  ``metrics.positives`` line of server/predictor.py:record_predictions):
  test_every_scored_row_and_positive_label_is_counted fails (no other fast test read it).
- (d) the Python server no longer shortens a long model name (``name=name`` instead of
  ``cut(name, contract.MODEL_CHARS_IN_ERROR)`` in server/registry.py:get):
  test_a_long_model_name_is_cut_in_the_message fails. The differential test missed it: its
  corpus named no model longer than "nope" (it now has one, for both servers).
"""

from __future__ import annotations

import grpc
import numpy as np
import pandas as pd
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from compiled_models.manifest import REFERENCE_FILE
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from server import contract_gen as contract
from server.app import create_server
from server.codec import quoted
from server.config import Settings
from server.metrics import ServerMetrics
from tests.conftest import ROOT, artifact_dir

SERVABLE = ("xgb-v1",)


@pytest.fixture(scope="module")
def server():
    artifact_dir("xgb-v2")
    registry = CollectorRegistry()
    settings = Settings(host="127.0.0.1", port=0, models_dir=ROOT / "compiled_models", threads=4)
    app = create_server(settings, ServerMetrics(registry), TracerProvider())
    app.registry.configure("xgb-v2", SERVABLE)
    app.server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{app.port}")
    try:
        yield app, registry, pb_grpc.PredictorStub(channel)
    finally:
        channel.close()
        app.server.stop(None)


def sample(registry: CollectorRegistry, spec: contract.MetricSpec, **labels: str) -> float:
    return registry.get_sample_value(spec.name, labels) or 0.0


def reference_rows() -> np.ndarray:
    return pd.read_parquet(artifact_dir("xgb-v2") / REFERENCE_FILE).to_numpy(np.float32)


def test_every_scored_row_and_positive_label_is_counted(server):
    """volspike_predictions_total and volspike_positive_labels_total (the dashboard's
    positive share) grow by the rows answered and by the labels answered true, per
    artifact. Mutation (c) in the module docstring."""
    _, registry, stub = server
    x = reference_rows()
    rows, positive = contract.PREDICTIONS, contract.POSITIVE_LABELS
    before = {s.name: sample(registry, s, artifact="xgb-v2") for s in (rows, positive)}
    resp = stub.Predict(
        pb.PredictRequest(packed=pb.PackedRows(float32_le=x.tobytes(), num_features=x.shape[1])),
        timeout=10,
    )
    positives = sum(resp.labels)
    assert 0 < positives < len(x), "the reference sample must hold both labels"
    assert sample(registry, rows, artifact="xgb-v2") == before[rows.name] + len(x)
    assert sample(registry, positive, artifact="xgb-v2") == before[positive.name] + positives


@pytest.mark.parametrize("method", ["Predict", "ModelInfo"])
def test_a_long_model_name_is_cut_in_the_message(server, method):
    """A client's model name in a status message is cut to contract.MODEL_CHARS_IN_ERROR
    characters and "...", as the native server cuts it
    (server/native/internal/registry/resolve_test.go).
    Mutation (d) in the module docstring."""
    _, _, stub = server
    long = "m" * 5000
    req = (
        pb.PredictRequest(model=long, packed=pb.PackedRows(float32_le=b"\0" * 36, num_features=9))
        if method == "Predict"
        else pb.ModelInfoRequest(model=long)
    )
    with pytest.raises(grpc.RpcError) as err:
        getattr(stub, method)(req, timeout=10)
    cut = "m" * contract.MODEL_CHARS_IN_ERROR + "..."
    want = contract.not_served(name=cut, servable=quoted(sorted(("xgb-v2", *SERVABLE))))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == want.message


def test_the_result_label_takes_the_contracts_values_only(server):
    """volspike_model_reloads_total and the load histogram, by result: ok and failed
    (proto/contract.toml [results]) exist from the start; a switch to an artifact that is
    not there counts one failed, and the one that serves stays."""
    app, registry, _ = server
    results = {
        s.labels["result"]
        for m in registry.collect()
        if m.name == contract.MODEL_RELOADS.name.removesuffix("_total")
        for s in m.samples
    }
    assert results == set(contract.RESULTS)
    before = sample(registry, contract.MODEL_RELOADS, result=contract.RESULT_FAILED)
    with pytest.raises(Exception, match="no manifest"):
        app.registry.activate("not-built")
    after = sample(registry, contract.MODEL_RELOADS, result=contract.RESULT_FAILED)
    assert after == before + 1
    assert app.registry.active is not None and app.registry.active.name == "xgb-v2"
