"""The two servers are one contract: one corpus of requests (valid, edge cases and seeded
random ones) goes to both; status codes, details and response bytes must be identical, and so
must the /metrics families they export (names, label names, bounded label values, buckets)
and how far the corpus moves every counter and histogram count.

A second pair serves a hostile models folder: a servable artifact whose library was
tampered with, one whose manifest lists the features in another order, and then a server
with no model at all; Predictor and KServe calls to each must get the same status, details
and bytes, and /metrics the same families with the same `type` label values.

Every failed call's status details carry a google.rpc.ErrorInfo (reason = the error's kind):
compared like the rest, and checked against the contract's kinds and codes.

Documented exceptions: `server_compute_seconds` and `loaded_at` (times), process/runtime
metric families (`process_*`, `go_*`, `python_*`), the protobuf library's own reason inside
a malformed-request message, and grpc-go's deadline reset (see docs/server.md). Mutations:
change one validation message in server/codec.py by hand and the corpus test fails naming
the request; make the Python registry answer a tampered artifact with `NotFound` and the
hostile-folder test fails; let the Python registry pass a long model name uncut (#21) and
the corpus test fails on "long unknown model" (tests/test_server_inprocess.py kills that
one fast)."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
import tomllib
import urllib.request

import grpc
import numpy as np
import pytest

from market.features import FEATURE_NAMES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from server import contract_gen as contract
from tests.conftest import ROOT, ServerProcess, artifact_dir

pytestmark = pytest.mark.fast_tier  # in `make test-fast` too: both servers, ~6 s in all

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
    with_nan[::3, W // 2 :] = np.nan
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
        # a client's model name is cut in the message: "nope" alone let an uncut name pass
        ("long unknown model", "Predict", pb.PredictRequest(model="m" * 5000, packed=packed(ref))),
        ("servable model", "Predict", pb.PredictRequest(model="xgb-v1", packed=packed(ref))),
        # no calibration map: the logistic artifact's own probability (issue 23)
        ("uncalibrated logistic", "Predict",
         pb.PredictRequest(model="crypto-logit-v1", packed=packed(with_nan))),
        ("ModelInfo", "ModelInfo", pb.ModelInfoRequest()),
        ("ModelInfo servable", "ModelInfo", pb.ModelInfoRequest(model="xgb-v1")),
        ("ModelInfo unknown", "ModelInfo", pb.ModelInfoRequest(model="nope")),
        ("ModelInfo long unknown", "ModelInfo", pb.ModelInfoRequest(model="m" * 5000)),
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


ErrorInfo = tuple[str, str, tuple[tuple[str, str], ...]]  # reason, domain, metadata


def error_info(err: grpc.RpcError) -> ErrorInfo | None:
    """The google.rpc.ErrorInfo in a failed call's status details (grpc-status-details-bin),
    after checking the details' google.rpc.Status repeats the call's code and message (what
    grpcio-status's from_call requires) and holds nothing else; None without details."""
    from google.rpc import error_details_pb2, status_pb2

    raw = dict(err.trailing_metadata() or ()).get("grpc-status-details-bin")
    if raw is None:
        return None
    st = status_pb2.Status.FromString(raw)
    assert (st.code, st.message) == (err.code().value[0], err.details()), st
    info = error_details_pb2.ErrorInfo()
    assert len(st.details) == 1 and st.details[0].Unpack(info), st.details
    return info.reason, info.domain, tuple(sorted(info.metadata.items()))


def call(stub, method: str, req) -> tuple[str, str, bytes, ErrorInfo | None]:
    """(code, message, response bytes, ErrorInfo of a failed call)."""
    try:
        resp = getattr(stub, method)(req, timeout=10)
    except grpc.RpcError as err:
        return err.code().name, err.details(), b"", error_info(err)
    if method == "Predict":
        resp.server_compute_seconds = 0.0
    elif method == "ModelInfo":
        resp.loaded_at.Clear()
    return "OK", "", resp.SerializeToString(deterministic=True), None


def assert_kinds_sent(answers) -> None:
    """Every failed call carries an ErrorInfo whose reason is a kind of the contract with the
    call's code, in the contract's domain, without metadata; an answered call carries none.
    (Mutation: send no details from server/rpc.py:abort, or from the native mapErrors, and
    this fails for that server; send another reason from one and the comparison fails.)"""
    kinds = tomllib.loads((ROOT / "proto" / "contract.toml").read_text())["kinds"]
    for code, _, _, info in answers:
        if code == "OK":
            assert info is None, info
            continue
        assert info is not None, (code, "no ErrorInfo")
        reason, domain, metadata = info
        assert kinds.get(reason) == code and domain == contract.ERROR_DOMAIN, info
        assert metadata == (), info


def test_the_same_request_gets_the_same_answer_from_both(servers):
    chans = {k: grpc.insecure_channel(s.address) for k, s in servers.items()}
    stubs = {k: pb_grpc.PredictorStub(c) for k, c in chans.items()}
    diffs, answers = [], []
    try:
        for name, method, req in corpus():
            a, b = (call(stubs[k], method, req) for k in ("native", "python"))
            if a != b:
                diffs.append(
                    f"{name}: native {a[:2]} {len(a[2])} bytes {a[3]} / "
                    f"python {b[:2]} {len(b[2])} bytes {b[3]}"
                )
            answers += [a, b]
    finally:
        for c in chans.values():
            c.close()
    assert not diffs, "\n".join(diffs)
    assert_kinds_sent(answers)
    assert {a[3][0] for a in answers if a[3]} >= {"InvalidArgument", "NotFound"}


def kserve_corpus() -> list[tuple[str, object]]:
    """ModelInfer edge cases (tritonclient's copy of the protos: ours would clash with it)."""
    from tritonclient.grpc import service_pb2 as v2

    def infer(x, shape=None, name="features", datatype="FP32", outputs=(), raw=True):
        x = np.asarray(x, "<f4")
        t = v2.ModelInferRequest.InferInputTensor(
            name=name, datatype=datatype, shape=list(x.shape if shape is None else shape)
        )
        if not raw:
            t.contents.fp32_contents.extend(x.ravel().tolist())
        out = [v2.ModelInferRequest.InferRequestedOutputTensor(name=o) for o in outputs]
        return v2.ModelInferRequest(
            model_name="xgb-v2",
            inputs=[t],
            outputs=out,
            raw_input_contents=[x.tobytes()] if raw else [],
        )

    x = np.random.default_rng(11).normal(0, 1, (5, W)).astype(np.float32)
    inf3 = x[:3].copy()
    inf3[0, 2] = np.inf
    return [
        ("5 rows", infer(x)),
        ("5 rows as fp32_contents", infer(x, raw=False)),
        ("probability only", infer(x, outputs=("probability",))),
        ("infinite and fewer rows than the shape", infer(inf3, shape=[5, W])),
        ("infinite", infer(inf3)),
        ("shape says more rows", infer(x, shape=[9, W])),
        ("FP64", infer(x, datatype="FP64")),
        ("long datatype", infer(x, datatype="F" * 5000)),
        ("long input name", infer(x, datatype="FP64", name="n" * 5000)),
        ("unknown long output", infer(x, outputs=("o" * 5000,))),
        ("1,000 dims", infer(x, shape=[1] * 1000)),
        ("wrong width", infer(x[:, :-1])),
        ("no inputs", v2.ModelInferRequest(model_name="xgb-v2")),
    ]


def test_kserve_edge_cases_get_the_same_answer_from_both(servers):
    """(Mutation: check infinities before the row count in server/kserve.py again, and the
    "infinite and fewer rows than the shape" case differs.)"""
    from tritonclient.grpc import service_pb2_grpc as v2_grpc

    diffs = []
    answers = {}
    for impl, srv in servers.items():
        with grpc.insecure_channel(srv.address) as ch:
            stub = v2_grpc.GRPCInferenceServiceStub(ch)
            answers[impl] = [call(stub, "ModelInfer", req) for _, req in kserve_corpus()]
    for (name, _), a, b in zip(kserve_corpus(), answers["native"], answers["python"], strict=True):
        if a != b:
            diffs.append(f"{name}: native {a[:2]} {a[3]} / python {b[:2]} {b[3]}")
        assert len(a[1]) < 1000, (name, len(a[1]))  # client text in a message is bounded
    assert not diffs, "\n".join(diffs)
    assert_kinds_sent(answers["native"] + answers["python"])
    assert {a[0] for a in answers["native"]} == {"OK", "INVALID_ARGUMENT"}


def counts(srv: ServerProcess) -> dict[str, float]:
    """Every volspike_ counter sample and histogram _count, keyed by name and labels (the
    sha256 label dropped): what a corpus must move by the same amount on both servers."""
    url = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"^(volspike_\w+?(?:_total|_count))(?:\{(.*)\})? (\S+)$", line)
        if not m:
            continue
        labels = sorted(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        key = m.group(1) + "{" + ",".join(f"{k}={v}" for k, v in labels if k != "sha256") + "}"
        out[key] = out.get(key, 0.0) + float(m.group(3))
    return out


def test_the_same_corpus_moves_every_counter_by_the_same_amount_on_both(servers):
    """Not only the same families: the same values. Requests, errors by code and kind,
    predictions and positive labels per artifact, each histogram's count. (Mutation, seen
    failing: drop the ``metrics.positives`` line of server/predictor.py, the #21 review's
    survivor: the python server's volspike_positive_labels_total stays behind.)"""
    before = {k: counts(srv) for k, srv in servers.items()}
    chans = {k: grpc.insecure_channel(s.address) for k, s in servers.items()}
    try:
        for c in chans.values():
            stub = pb_grpc.PredictorStub(c)
            for _name, method, req in corpus():
                call(stub, method, req)
    finally:
        for c in chans.values():
            c.close()
    time.sleep(0.2)  # a server records a call's metrics after it answers
    moved = {}
    for k, srv in servers.items():
        after = counts(srv)
        moved[k] = {n: v - before[k].get(n, 0.0) for n, v in after.items()}
        moved[k] = {n: v for n, v in moved[k].items() if v}
    diffs = {
        n: (moved["native"].get(n), moved["python"].get(n))
        for n in moved["native"].keys() | moved["python"].keys()
        if moved["native"].get(n) != moved["python"].get(n)
    }
    assert not diffs, diffs
    names = {n.split("{")[0] for n in moved["native"]}
    assert {"volspike_positive_labels_total", "volspike_predictions_total",
            "volspike_rpc_errors_total", "volspike_rpc_requests_total"} <= names, names  # fmt: skip


EXEMPT = re.compile(r"^(process_|go_|python_|promhttp_)")
BOUNDED_LABELS = {"method", "code", "type", "result", "artifact", "le"}


def families(text: str) -> dict[str, set]:
    """family name -> {(label name, value if bounded)} and its HELP and TYPE lines, from a
    text exposition."""
    out: dict[str, set] = {}
    for line in text.splitlines():
        meta = re.match(r"^# (HELP|TYPE) ([a-zA-Z_:][\w:]*) (.*)$", line)
        if meta and not EXEMPT.match(meta.group(2)):
            kind, name, value = meta.groups()
            out.setdefault(_family(name), set()).add((kind, value))
            continue
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
        out.setdefault(_family(m.group(1)), set()).update(labels | {("sampled", "")})
    # A family without samples is no series to Prometheus: prometheus_client still writes
    # its HELP and TYPE, client_golang does not (volspike_active_model_info with no model).
    return {n: v for n, v in out.items() if ("sampled", "") in v}


def _family(name: str) -> str:
    """The family a sample or HELP line belongs to: counters expose <name>_total while
    prometheus_client's HELP line names <name>; histograms add _bucket, _sum, _count."""
    return re.sub(r"_(total|bucket|sum|count|created)$", "", name)


def scrape(srv: ServerProcess) -> dict[str, set]:
    url = f"http://127.0.0.1:{srv.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return families(r.read().decode())


def assert_same_families(native: dict[str, set], python: dict[str, set]) -> None:
    assert set(native) == set(python), set(native) ^ set(python)
    diffs = {
        n: {"native only": native[n] - python[n], "python only": python[n] - native[n]}
        for n in native
        if native[n] != python[n]
    }
    assert not diffs, diffs


def test_both_export_the_same_metric_families(servers):
    """Names, HELP and TYPE, label names, bounded label values and bucket bounds."""
    assert_same_families(scrape(servers["native"]), scrape(servers["python"]))


def deadline_errors(srv: ServerProcess) -> float:
    """volspike_rpc_errors_total{method="Predict", code="DEADLINE_EXCEEDED"}, either kind:
    DeadlineExceeded, or ClientDeadline when the call began with less than 25 ms left (on a
    loaded machine the 3.6 MB request can take that long to read). The servers write labels
    in different orders."""
    want = {("method", "Predict"), ("code", "DEADLINE_EXCEEDED")}
    total = 0.0
    for line in srv.metrics_text().splitlines():
        m = re.match(r"^volspike_rpc_errors_total\{(.*)\} (\S+)", line)
        labels = set(re.findall(r'(\w+)="([^"]*)"', m.group(1))) if m else set()
        if m and want <= labels and labels - want <= {("type", "DeadlineExceeded"),
                                                        ("type", "ClientDeadline")}:  # fmt: skip
            total += float(m.group(2))
    return total


def test_a_call_past_its_deadline_ends_deadline_exceeded_on_both(servers):
    """Server side, both stop scoring and record DEADLINE_EXCEEDED/DeadlineExceeded. The
    client sees DEADLINE_EXCEEDED, or CANCELLED from the native server when it reads grpc-go's
    stream reset first (docs/server.md)."""
    x = np.random.default_rng(3).normal(0, 1, (100_000, W)).astype(np.float32)
    req = pb.PredictRequest(packed=packed(x))
    for srv in servers.values():
        before = deadline_errors(srv)
        with grpc.insecure_channel(srv.address) as ch, pytest.raises(grpc.RpcError) as err:
            pb_grpc.PredictorStub(ch).Predict(req, timeout=0.05)
        allowed = {grpc.StatusCode.DEADLINE_EXCEEDED}
        if srv.impl == "native":
            allowed.add(grpc.StatusCode.CANCELLED)
        assert err.value.code() in allowed, (srv.impl, err.value)
        deadline = time.monotonic() + 10
        while deadline_errors(srv) == before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert deadline_errors(srv) == before + 1, srv.impl


def with_tampered_v1(root) -> None:
    """xgb-v2 intact and an xgb-v1 whose library no longer matches its manifest's sha256."""
    for name in ("xgb-v2", "xgb-v1"):
        shutil.copytree(artifact_dir(name), root / name)
    lib = root / "xgb-v1" / "model.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0xFF
    lib.write_bytes(bytes(data))


def hostile_models(root) -> None:
    """xgb-v2 intact; xgb-v1's library tampered with; `reordered`: baseline-rv60's library
    under a manifest listing the same features in another order (same width)."""
    with_tampered_v1(root)
    shutil.copytree(artifact_dir("baseline-rv60"), root / "reordered")
    manifest = json.loads((root / "reordered" / "manifest.json").read_text())
    manifest["name"] = "reordered"
    manifest["feature_names"] = manifest["feature_names"][::-1]
    (root / "reordered" / "manifest.json").write_text(json.dumps(manifest))
    for name, edit in MANIFEST_EDITS.items():  # xgb-v2's library under an edited manifest
        shutil.copytree(artifact_dir("xgb-v2"), root / name)
        manifest = json.loads((root / name / "manifest.json").read_text())
        manifest["name"] = name
        edit(manifest)
        text = json.dumps(manifest).encode()
        if name in RAW_EDITS:
            text = RAW_EDITS[name](text)
        (root / name / "manifest.json").write_bytes(text)


def _set(**kv):
    return lambda m: m.update(kv)


def _nested(depth: int) -> object:
    v: object = 1
    for _ in range(depth):
        v = [v]
    return v


def _bins(edges) -> dict:
    return {"edges": edges, "shares": [0.0] * (len(edges) + 2)}


def _drift(bins) -> object:
    return lambda m: m.update(
        drift={"features": dict.fromkeys(m["feature_names"], bins), "prediction": bins}
    )


# Each manifest a careless operator or a hostile folder can hold; both servers must give the
# same verdict with the same words (issue: the native server read keys case-insensitively,
# loaded invalid UTF-8 and bad drift bins; Python refused other documents).
MANIFEST_EDITS = {
    "null-threshold": _set(decision_threshold=None),
    "names-string": _set(feature_names="abcdefghi"),
    "no-sha": lambda m: m.pop("library_sha256"),
    "metadata-only": lambda m: (m.pop("versions"), m.update(description="edited")),  # serves
    "case-threshold": _set(Decision_Threshold=2.0),  # Go took the last case-variant key
    "case-library": _set(LIBRARY="../xgb-v1/model.so", LIBRARY_SHA256="0" * 64),
    "extra-field": _set(extra_field=1),
    "description-number": _set(description=5),  # Python loaded it, then ModelInfo INTERNAL
    "drift-list": _set(drift=["x"]),  # crashed the consumer at its first batch
    "drift-lists": _drift([[0.0], [1.0]]),
    "drift-2d": _drift(_bins([[0.0, 1.0]])),
    "drift-4000": _drift(_bins(list(range(4000)))),  # ~72,000 series in the consumer
    "drift-unsorted": _drift(_bins([1.0, 0.0])),
    "drift-good": _drift(_bins([0.0, 1.0])),  # serves
    "long-text": _set(trained_on="x" * 5000),
    "calibration-null": _set(calibration={"method": "isotonic", "x": [None, 1], "y": [0, 1]}),
    "invalid-utf8": _set(description="PLACEHOLDER"),
    "lone-surrogate": _set(description="\ud800"),
    "replacement-char": _set(description="\ufffd"),
    "duplicate-key": _set(),
    "deep": lambda m: m.update(params={"a": _nested(34)}),
    "huge-number": _set(metrics={"x": 1}),
    "over-1mib": _set(params={"blob": "y" * 1_100_000}),
    "long-features": lambda m: (  # drift bins name the features: none
        m.pop("drift"),
        m.update(feature_names=[f"f{i:03d}_" + "z" * 59 for i in range(W)]),
    ),
}
RAW_EDITS = {  # byte-level edits json.dumps cannot write
    "invalid-utf8": lambda t: t.replace(b'"PLACEHOLDER"', b'"caf\xe9"'),
    "duplicate-key": lambda t: t.replace(b'"name": ', b'"name": "xgb-v2", "name": ', 1),
    "huge-number": lambda t: t.replace(b'{"x": 1}', b'{"x": 1e400}'),
}
SERVABLE = ("xgb-v1", *MANIFEST_EDITS, "reordered")  # "reordered" loads last
SERVES = {"metadata-only", "drift-good"}


def kserve_calls():
    """KServe requests through tritonclient's own copy of the protos (importing ours in the
    test process would clash with it)."""
    from tritonclient.grpc import service_pb2 as v2

    x = np.zeros((2, W), "<f4").tobytes()
    tensor = v2.ModelInferRequest.InferInputTensor(name="features", datatype="FP32", shape=[2, W])
    out = [("ServerReady", v2.ServerReadyRequest())]
    for model in ("", "xgb-v2", *SERVABLE, "nope"):
        out += [
            ("ModelReady", v2.ModelReadyRequest(name=model)),
            ("ModelMetadata", v2.ModelMetadataRequest(name=model)),
            ("ModelInfer", v2.ModelInferRequest(
                model_name=model, inputs=[tensor], raw_input_contents=[x])),
        ]  # fmt: skip
    return out


def hostile_answers(srv: ServerProcess) -> dict[str, tuple[str, str, bytes]]:
    from tritonclient.grpc import service_pb2_grpc as v2_grpc

    x = np.zeros((3, W), np.float32)
    answers = {}
    with grpc.insecure_channel(srv.address) as ch:
        stub, kserve = pb_grpc.PredictorStub(ch), v2_grpc.GRPCInferenceServiceStub(ch)
        for model in ("", "xgb-v2", *SERVABLE, "nope"):
            answers[f"Predict {model!r}"] = call(
                stub, "Predict", pb.PredictRequest(model=model, packed=packed(x))
            )
            answers[f"ModelInfo {model!r}"] = call(
                stub, "ModelInfo", pb.ModelInfoRequest(model=model)
            )
        for method, req in kserve_calls():
            answers[f"{method} {getattr(req, 'name', '') or getattr(req, 'model_name', '')!r}"] = (
                call(kserve, method, req)
            )
    return answers


def wait_loads_settled(srv: ServerProcess, timeout: float = 30.0) -> None:
    """Until the last servable artifact's load was tried (the active one goes first), or
    the active one failed (then no servable one is loaded)."""
    settled = (
        'volspike_model_load_duration_seconds_count{artifact="reordered"',
        'volspike_model_reloads_total{result="failed"} 1.0',
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if any(marker in srv.metrics_text() for marker in settled):
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise TimeoutError(srv.log.read_text())


@pytest.mark.parametrize("active", ["xgb-v2", "xgb-v1"], ids=["serving", "no-model"])
def test_a_hostile_models_folder_gets_the_same_answers_from_both(tmp_path, active):
    """no-model: the active artifact is the tampered one, so nothing ever loads."""
    models = tmp_path / "models"
    hostile_models(models)
    both = {
        impl: ServerProcess(
            tmp_path / impl,
            impl=impl,
            artifact=active,
            servable=SERVABLE,
            env={"VOLSPIKE_MODELS_DIR": str(models)},
        )
        for impl in ("native", "python")
    }
    answers, metrics = {}, {}
    try:
        for srv in both.values():
            srv.start(wait_serving=False)
        for impl, srv in both.items():
            wait_loads_settled(srv)
            answers[impl] = hostile_answers(srv)
            metrics[impl] = scrape(srv)
    finally:
        for srv in both.values():
            srv.stop()
    diffs = [
        f"{k}:\n  native {answers['native'][k][:2]} {answers['native'][k][3]}"
        f"\n  python {answers['python'][k][:2]} {answers['python'][k][3]}"
        for k in answers["native"]
        if answers["native"][k] != answers["python"][k]
    ]
    assert not diffs, "\n".join(diffs)
    assert_kinds_sent([*answers["native"].values(), *answers["python"].values()])
    codes = {v[0] for v in answers["native"].values()}
    assert "UNAVAILABLE" in codes and "NOT_FOUND" in codes, codes
    assert_same_families(metrics["native"], metrics["python"])
    kinds = {v for k, v in metrics["native"]["volspike_rpc_errors"] if k == "type"}
    want = {"NotFound", "ArtifactUnavailable"} | ({"NoModel"} if active == "xgb-v1" else set())
    assert want <= kinds, kinds
    reordered = answers["native"]["Predict 'reordered'"]
    if active == "xgb-v2":  # refused: another feature order under the same width
        assert (
            f"features ['{FEATURE_NAMES[-1]}'" in reordered[1]
            and "restart the server" in reordered[1]
        )
    else:  # not loaded while nothing is active: the first active artifact fixes the schema
        assert "not loaded: no model is active yet" in reordered[1], reordered
        return
    details = {m: answers["native"][f"Predict {m!r}"][1] for m in MANIFEST_EDITS}
    for m in MANIFEST_EDITS:
        code = answers["native"][f"Predict {m!r}"][0]
        assert code == ("OK" if m in SERVES else "UNAVAILABLE"), (m, code, details[m])
        assert len(details[m]) <= 1024, (m, len(details[m]))  # every status message bounded
    assert "field 'decision_threshold' must be a number in [0, 1]" in details["null-threshold"]
    assert "field 'feature_names' must be a list of 1-256 distinct" in details["names-string"]
    assert "manifest field 'library_sha256' is missing" in details["no-sha"]
    for m, field in [("case-threshold", "Decision_Threshold"), ("case-library", "LIBRARY"),
                     ("extra-field", "extra_field")]:  # fmt: skip
        assert f"manifest field '{field}' is not in the manifest schema" in details[m], details[m]
    assert (
        "manifest field 'description' must be a string of at most 4096"
        in details["description-number"]
    )
    for m in ("drift-list", "drift-lists", "drift-2d", "drift-4000", "drift-unsorted"):
        assert "manifest field 'drift' must be {} or an object" in details[m], details[m]
    assert "manifest field 'trained_on' must be a string of at most 4096" in details["long-text"]
    assert "manifest is not valid UTF-8" in details["invalid-utf8"]
    for m in ("lone-surrogate", "replacement-char"):
        assert "holds text that is not valid Unicode" in details[m], details[m]
    assert "manifest has the key 'name' twice" in details["duplicate-key"]
    assert "manifest nests deeper than 32 levels" in details["deep"]
    assert "manifest holds a number out of range: 1e400" in details["huge-number"]
    assert "; the limit is 1048576" in details["over-1mib"]
    # 15 long names overflow the 1,024-character message: the names are clipped, the same on
    # both servers (compared above), and the "differ from" part falls off the end
    assert "long-features: features ['f000_" in details["long-features"]
    assert details["long-features"].endswith("...")
    assert "calibration x must be a list of numbers" in details["calibration-null"]  # Go: [0, 1]


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
    import tritonclient.grpc as tc

    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for srv in servers.values():
        client = tc.InferenceServerClient(url=srv.address)
        try:
            meta = client.get_server_metadata(as_json=True)
        finally:
            client.close()
        assert meta == {"name": "volspike", "version": want}, meta
