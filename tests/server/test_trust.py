"""What a careless or hostile client can do to both servers, on real processes:

- a rollback under a KServe client that calls by the name ModelMetadata("") gave it (as
  tritonclient users do) failed 108,172 of 148,000 calls ("model 'crypto-v1' is not
  served"): the service now answers under one model name whatever artifact is active, and
  the artifacts are its versions;
- a storm of 10 ms-deadline clients made the native server count ~9,700 INTERNAL errors
  (request-read failures) and log an ERROR for each, so impatient clients paged the
  on-call through the availability SLI;
- one output requested 1,000 times built ~400 MB per call;
- an oversized traceparent wrote a WARNING line per call.
"""

from __future__ import annotations

import re
import threading
import time

import grpc
import numpy as np
import pytest

from market.features import N_FEATURES
from observability import slo
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from server.rollback import set_artifact
from tests.conftest import ServerProcess


def error_counts(srv: ServerProcess) -> dict[str, float]:
    """volspike_rpc_errors_total by type (every method)."""
    out: dict[str, float] = {}
    for line in srv.metrics_text().splitlines():
        m = re.match(r"^volspike_rpc_errors_total\{(.*)\} (\S+)", line)
        if m:
            kind = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))["type"]
            out[kind] = out.get(kind, 0.0) + float(m.group(2))
    return out


def test_a_rollback_fails_no_kserve_client_calling_by_the_served_name(tmp_path, impl):
    """Ten rollbacks between two artifacts (neither servable after it is left) under
    four tritonclient loops that learned the model name from ModelMetadata(""), plus one
    pinned to a servable version. (Mutation: ModelMetadata answering the active artifact's
    name fails ~70 % of the calls after the first rollback.)"""
    import tritonclient.grpc as tc

    srv = ServerProcess(tmp_path, artifact="xgb-v2", servable=("baseline-rv60",), impl=impl)
    srv.start()
    x = np.random.default_rng(5).normal(0, 1, (8, N_FEATURES)).astype(np.float32)
    meta = tc.InferenceServerClient(url=srv.address).get_model_metadata("", as_json=True)
    name = meta["name"]
    assert name == "volspike" and meta["versions"][0] == "xgb-v2", meta
    stop = threading.Event()
    failures: list[str] = []
    versions: dict[str, set[str]] = {"": set(), "baseline-rv60": set()}
    calls = [0]
    lock = threading.Lock()

    def loop(version: str) -> None:
        client = tc.InferenceServerClient(url=srv.address)
        inp = tc.InferInput("features", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        deadline = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                res = client.infer(name, [inp], model_version=version, client_timeout=5)
            except Exception as exc:  # tritonclient raises its own InferenceServerException
                with lock:
                    failures.append(str(exc))
                continue
            r = res.get_response()
            probs = res.as_numpy("probability")
            with lock:
                calls[0] += 1
                versions[version].add(r.model_version)
                if r.model_name != name or probs is None or len(probs) != len(x):
                    failures.append(f"answer {r.model_name} {r.model_version} {probs}")
        client.close()

    threads = [threading.Thread(target=loop, args=(v,)) for v in ("", "", "", "", "baseline-rv60")]
    for t in threads:
        t.start()
    try:
        for i in range(10):
            time.sleep(0.3)
            set_artifact(srv.model_config, ("xgb-v1", "xgb-v2")[i % 2])
            srv.proc.send_signal(1)  # type: ignore[union-attr]
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        assert srv.stop() == 0
    assert not failures, (len(failures), failures[:3])
    assert calls[0] > 100
    assert versions[""] == {"xgb-v1", "xgb-v2"}, versions  # followed the active artifact
    assert versions["baseline-rv60"] == {"baseline-rv60"}  # a pinned version stays put
    assert srv.log.read_text().count("active model is now") >= 11


def test_a_pinned_version_that_is_not_servable_is_not_found(servers):
    import tritonclient.grpc as tc
    from tritonclient.utils import InferenceServerException

    for srv in servers.values():
        client = tc.InferenceServerClient(url=srv.address)
        assert client.is_model_ready("volspike", "xgb-v1")
        assert not client.is_model_ready("volspike", "nope")
        with pytest.raises(InferenceServerException, match="has no servable version 'nope'"):
            client.get_model_metadata("volspike", "nope")
        meta = client.get_model_metadata("volspike", "xgb-v1", as_json=True)
        assert meta["name"] == "volspike" and meta["versions"] == ["xgb-v1"], meta
        by_artifact = client.get_model_metadata("xgb-v1", as_json=True)
        assert by_artifact["name"] == "xgb-v1", by_artifact  # still answerable by its own name
        client.close()
    info = pb_grpc.PredictorStub(grpc.insecure_channel(srv.address)).ModelInfo(
        pb.ModelInfoRequest(model="volspike"), timeout=5
    )
    assert info.model_name == "volspike" and info.artifact == "xgb-v2" and info.active


def test_a_deadline_storm_leaves_the_availability_sli_untouched(servers):
    """32 clients with 10 ms deadlines for 3 s, half of the calls 20,000 rows: every failure
    is the client's (its deadline had passed when the call was read or begun, or it began with
    less than the 25 ms the service promises: ClientDeadline; or cancelled), none is INTERNAL
    or another kind the availability SLI counts, and no ERROR line is logged. (Mutations:
    the native read failures unmapped give INTERNAL; no short-deadline rule gives ~900
    DeadlineExceeded.)"""
    faults = set(slo.load()["alerting"]["server_fault_kinds"])
    one = np.zeros((1, N_FEATURES), np.float32)
    big = np.zeros((20_000, N_FEATURES), np.float32)  # 720 kB: still being read at 10 ms
    reqs = [
        pb.PredictRequest(packed=pb.PackedRows(float32_le=a.tobytes(), num_features=N_FEATURES))
        for a in (one, big)
    ]
    for srv in servers.values():
        before = error_counts(srv)
        log_before = srv.log.read_text()
        seen: dict[str, int] = {}
        lock = threading.Lock()

        def storm(k: int, srv=srv, seen=seen, lock=lock) -> None:
            own = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(srv.address, options=own) as ch:
                stub = pb_grpc.PredictorStub(ch)
                end = time.monotonic() + 3
                i = 0
                while time.monotonic() < end and i < 2_000:
                    i += 1
                    try:
                        stub.Predict(reqs[(k + i) % 2], timeout=0.01)
                        code = "OK"
                    except grpc.RpcError as err:
                        code = err.code().name
                    with lock:
                        seen[code] = seen.get(code, 0) + 1

        threads = [threading.Thread(target=storm, args=(k,)) for k in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        time.sleep(0.5)  # the last calls' counts
        after = error_counts(srv)
        delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
        assert seen.get("DEADLINE_EXCEEDED", 0) > 100, (srv.impl, seen)  # a real storm
        assert set(seen) <= {"OK", "DEADLINE_EXCEEDED", "CANCELLED"}, (srv.impl, seen)
        assert delta.get("ClientDeadline", 0) > 0, (srv.impl, delta)
        assert not {k: v for k, v in delta.items() if k in faults and v}, (srv.impl, delta, seen)
        new_log = srv.log.read_text()[len(log_before) :]
        assert "ERROR" not in new_log and "level=ERROR" not in new_log, new_log[-2000:]


def test_a_repeated_output_is_refused_before_any_work(servers):
    """100,000 rows with `probability` requested 1,000 times built ~400 MB per call."""
    from tritonclient.grpc import service_pb2 as v2
    from tritonclient.grpc import service_pb2_grpc as v2_grpc

    x = np.zeros((100_000, N_FEATURES), "<f4").tobytes()
    tensor = v2.ModelInferRequest.InferInputTensor(
        name="features", datatype="FP32", shape=[100_000, N_FEATURES]
    )
    out = v2.ModelInferRequest.InferRequestedOutputTensor
    req = v2.ModelInferRequest(
        model_name="volspike",
        inputs=[tensor],
        raw_input_contents=[x],
        outputs=[out(name="label"), *[out(name="probability")] * 1000],
    )
    for srv in servers.values():
        opts = [("grpc.max_send_message_length", 16 << 20)]
        with (
            grpc.insecure_channel(srv.address, options=opts) as ch,
            pytest.raises(grpc.RpcError) as err,
        ):
            v2_grpc.GRPCInferenceServiceStub(ch).ModelInfer(req, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, srv.impl
        assert err.value.details() == "outputs: 'probability' is requested more than once"


def test_an_oversized_trace_header_is_logged_once_not_per_call(servers):
    """A client sending a 3 kB traceparent on every call wrote one WARNING line per call."""
    md = (("traceparent", "00-" + "a" * 3_000), ("tracestate", "k=" + "v" * 3_000))
    req = pb.PredictRequest(
        packed=pb.PackedRows(
            float32_le=np.zeros((1, N_FEATURES), "<f4").tobytes(), num_features=N_FEATURES
        )
    )
    for srv in servers.values():
        log_before = len(srv.log.read_text())
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.PredictorStub(ch)
            for _ in range(500):
                stub.Predict(req, timeout=5, metadata=md)
        lines = srv.log.read_text()[log_before:].splitlines()
        assert len(lines) <= 3, (srv.impl, lines[:5])


def test_a_rejected_call_is_logged_with_who_sent_it_once_per_cause(servers):
    """The runbook says "fix the caller", but no rejected call was logged and nothing recorded
    the caller. Now one line per method and kind per 10 s names the peer and the client
    (`x-client-name` metadata, else its user-agent) with the status message."""
    bad = pb.PredictRequest(rows=[pb.Row(features={"nope": 1.0})])
    for srv in servers.values():
        log_before = len(srv.log.read_text())
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.PredictorStub(ch)
            for _ in range(50):
                with pytest.raises(grpc.RpcError):
                    stub.Predict(bad, timeout=5, metadata=(("x-client-name", "risk-desk-7"),))
        lines = [ln for ln in srv.log.read_text()[log_before:].splitlines() if "rejected" in ln]
        assert len(lines) == 1, (srv.impl, lines)
        assert "risk-desk-7" in lines[0] and "127.0.0.1" in lines[0], lines[0]
        assert "InvalidArgument" in lines[0] and "unknown feature(s) 'nope'" in lines[0], lines[0]
