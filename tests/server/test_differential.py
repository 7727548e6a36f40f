"""The two servers are one contract: one corpus of requests (valid, edge cases and seeded
random ones) goes to both; status codes, details and response bytes must be identical, and so
must the /metrics families they export (names, label names, bounded label values, buckets).

Documented exceptions: `server_compute_seconds` and `loaded_at` (times), process/runtime
metric families (`process_*`, `go_*`, `python_*`), and grpc-go's deadline reset (see
docs/server.md). Mutation: change one validation message in server/codec.py and the corpus
test fails naming the request."""

from __future__ import annotations

import math
import re

import grpc
import numpy as np
import pytest

from market.features import FEATURE_NAMES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess

GOOD = dict.fromkeys(FEATURE_NAMES, 0.001)
W = len(FEATURE_NAMES)


def packed(x: np.ndarray, width: int = W) -> pb.PackedRows:
    return pb.PackedRows(float32_le=np.asarray(x, "<f4").tobytes(), num_features=width)


def corpus() -> list[tuple[str, str, object]]:
    """(name, method, request): every edge case, then seeded random packed requests."""
    rng = np.random.default_rng(7)
    ref = rng.normal(0, 0.01, (64, W)).astype(np.float32)
    ref[:, 0] = 1640.0
    with_nan = ref.copy()
    with_nan[::3, 9:] = np.nan
    inf = ref.copy()
    inf[5, 4] = np.inf
    cases: list[tuple[str, str, object]] = [
        ("one named row", "Predict", pb.PredictRequest(rows=[pb.Row(features=GOOD)])),
        ("packed 64 rows", "Predict", pb.PredictRequest(packed=packed(ref))),
        ("NaN is missing", "Predict", pb.PredictRequest(packed=packed(with_nan))),
        ("infinite", "Predict", pb.PredictRequest(packed=packed(inf))),
        ("empty request", "Predict", pb.PredictRequest()),
        ("empty packed", "Predict", pb.PredictRequest(packed=pb.PackedRows(num_features=W))),
        ("wrong width", "Predict", pb.PredictRequest(packed=packed(ref[:, : W - 1], W - 1))),
        ("ragged bytes", "Predict",
         pb.PredictRequest(packed=pb.PackedRows(float32_le=b"\0" * 45, num_features=W))),
        ("both rows and packed", "Predict",
         pb.PredictRequest(rows=[pb.Row(features=GOOD)], packed=packed(ref))),
        ("unknown name", "Predict", pb.PredictRequest(rows=[pb.Row(features={**GOOD, "x": 1})])),
        ("misspelled name", "Predict",
         pb.PredictRequest(rows=[pb.Row(features={**dict.fromkeys(FEATURE_NAMES[1:], 1.0),
                                                  "RET_1S_Z": 1})])),
        ("missing name", "Predict", pb.PredictRequest(rows=[pb.Row(features={"ret_1s_z": 1.0})])),
        ("1,000 unknown names", "Predict", pb.PredictRequest(
            rows=[pb.Row(features={**GOOD, **{f"u{i:04d}{'z' * 40}": 1.0 for i in range(1000)}})])),
        ("named overflow", "Predict",
         pb.PredictRequest(rows=[pb.Row(features={**GOOD, "rv_60s_rel": 1e300})])),
        ("named inf", "Predict",
         pb.PredictRequest(rows=[pb.Row(features={**GOOD, "ret_1s_z": math.inf})])),
        ("unknown model", "Predict", pb.PredictRequest(model="nope", packed=packed(ref))),
        ("servable model", "Predict", pb.PredictRequest(model="xgb-v1", packed=packed(ref))),
        ("ModelInfo", "ModelInfo", pb.ModelInfoRequest()),
        ("ModelInfo servable", "ModelInfo", pb.ModelInfoRequest(model="xgb-v1")),
        ("ModelInfo unknown", "ModelInfo", pb.ModelInfoRequest(model="nope")),
    ]  # fmt: skip
    for i in range(40):
        rows = int(rng.integers(1, 200))
        width = W if rng.random() < 0.8 else int(rng.integers(1, 20))
        x = rng.normal(0, 1, (rows, width)).astype(np.float32)
        x[rng.random(x.shape) < 0.1] = np.nan
        if rng.random() < 0.1:
            x[rng.integers(rows), rng.integers(width)] = -np.inf
        cases.append((f"random {i}", "Predict", pb.PredictRequest(packed=packed(x, width))))
    return cases


def call(stub, method: str, req) -> tuple[str, str, bytes]:
    try:
        resp = getattr(stub, method)(req, timeout=10)
    except grpc.RpcError as err:
        return err.code().name, err.details(), b""
    if method == "Predict":
        resp.server_compute_seconds = 0.0
    else:
        resp.loaded_at.Clear()
    return "OK", "", resp.SerializeToString(deterministic=True)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    both = {
        impl: ServerProcess(
            tmp_path_factory.mktemp(f"diff-{impl}"), impl=impl, servable=("xgb-v1",)
        )
        for impl in ("native", "python")
    }
    for srv in both.values():
        srv.start(wait_serving=False)
    for srv in both.values():
        srv.wait_health("SERVING")
    yield both
    for srv in both.values():
        srv.stop()


def test_the_same_request_gets_the_same_answer_from_both(servers):
    chans = {k: grpc.insecure_channel(s.address) for k, s in servers.items()}
    stubs = {k: pb_grpc.PredictorStub(c) for k, c in chans.items()}
    diffs = []
    try:
        for name, method, req in corpus():
            a, b = (call(stubs[k], method, req) for k in ("native", "python"))
            if a != b:
                diffs.append(
                    f"{name}: native {a[:2]} {len(a[2])} bytes / python {b[:2]} {len(b[2])} bytes"
                )
    finally:
        for c in chans.values():
            c.close()
    assert not diffs, "\n".join(diffs)


EXEMPT = re.compile(r"^(process_|go_|python_|promhttp_)")
BOUNDED_LABELS = {"method", "code", "type", "result", "artifact", "le"}


def families(text: str) -> dict[str, set]:
    """family name -> {(label name, value if bounded)} from a text exposition."""
    out: dict[str, set] = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? ", line)
        if not m or EXEMPT.match(m.group(1)):
            continue
        labels = set()
        for k, v in re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""):
            if k == "le":  # a bound, compared as a number ("1" and "1.0" are one bucket)
                v = repr(float(v))
            labels.add((k, v if k in BOUNDED_LABELS else "*"))
        if "sha256" in {k for k, _ in labels}:
            labels = {(k, v) for k, v in labels if k != "sha256"} | {("sha256", "*")}
        out.setdefault(m.group(1), set()).update(labels)
    return out


def test_both_export_the_same_metric_families(servers):
    import urllib.request

    texts = {}
    for impl, srv in servers.items():
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=5) as r:
            texts[impl] = families(r.read().decode())
    native, python = texts["native"], texts["python"]
    assert set(native) == set(python), set(native) ^ set(python)
    diffs = {
        n: {"native only": native[n] - python[n], "python only": python[n] - native[n]}
        for n in native
        if native[n] != python[n]
    }
    assert not diffs, diffs


def test_the_python_server_refuses_a_proto_method_without_a_handler():
    """(Mutation: drop the check in server/rpc.py:generic_handler and this fails.)"""
    from proto.volatility.v1 import predictor_pb2_grpc
    from server.rpc import generic_handler

    class Incomplete(predictor_pb2_grpc.PredictorServicer):  # Predict, ModelInfo not wrapped
        metrics = None

    with pytest.raises(RuntimeError, match=r"volatility\.v1\.Predictor/Predict has no handler"):
        generic_handler(Incomplete(), pb.DESCRIPTOR.services_by_name["Predictor"])


def test_both_report_the_one_version_string(servers):
    """pyproject.toml's version, read by both (mutation: a literal in either server)."""
    import tomllib

    import tritonclient.grpc as tc

    from tests.conftest import ROOT

    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for srv in servers.values():
        client = tc.InferenceServerClient(url=srv.address)
        try:
            meta = client.get_server_metadata(as_json=True)
        finally:
            client.close()
        assert meta == {"name": "volspike", "version": want}, meta
