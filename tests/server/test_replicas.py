"""Replicas balanced by the client (consumer/channel.py): calls spread over every serving
replica, none reach a replica that says NOT_SERVING, and a replica killed under traffic
leaves the rotation at once."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import numpy as np
import pytest

from consumer.channel import ServerAddressError, open_channel, target
from market.features import N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess
from tools.procs import scrape

ROW = np.random.default_rng(0).standard_normal((1, N_FEATURES)).astype(np.float32)
REQ = pb.PredictRequest(packed=pb.PackedRows(float32_le=ROW.tobytes(), num_features=N_FEATURES))


def predicts(srv: ServerProcess) -> float:
    m = scrape(srv.metrics_port)
    calls = "volspike_rpc_requests_total{"
    return sum(v for k, v in m.items() if k.startswith(calls) and 'method="Predict"' in k)


def test_server_lists_parse_and_bad_ones_name_the_problem():
    assert target("127.0.0.1:1") == ("127.0.0.1:1", False)
    assert target("127.0.0.1:1, 127.0.0.1:2") == ("ipv4:127.0.0.1:1,127.0.0.1:2", True)
    assert target("[::1]:1,[::1]:2") == ("ipv6:[::1]:1,[::1]:2", True)
    assert target("dns:///volspike-server:50051") == ("dns:///volspike-server:50051", True)
    for bad, says in (("", "empty"), ("a.example:1,b.example:2", "not an IP literal"),
                      ("127.0.0.1,127.0.0.1:2", "not host:port"),
                      ("127.0.0.1:99999,127.0.0.1:2", "not host:port"),
                      ("127.0.0.1:1,[::1]:2", "mix IPv4 and IPv6"),
                      ("127.0.0.1:1,127.0.0.1:1", "listed twice")):  # fmt: skip
        with pytest.raises(ServerAddressError, match=says):
            target(bad)


def burst(stub, n: int) -> tuple[int, float | None]:
    """n calls one after another: (failed, seconds until the first success)."""
    t0, failed, first_ok = time.monotonic(), 0, None
    for _ in range(n):
        try:
            stub.Predict(REQ, timeout=5)
            first_ok = first_ok if first_ok is not None else time.monotonic() - t0
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err
            failed += 1
    return failed, first_ok


@pytest.mark.parametrize("impl", ["native", "python"])
def test_calls_spread_over_replicas_a_drained_one_fails_none_a_killed_one_leaves_at_once(
    tmp_path, impl
):
    reps = [ServerProcess(tmp_path / f"r{i}", impl=impl, env={"VOLSPIKE_GRACE_SECONDS": "5"})
            for i in range(3)]  # fmt: skip
    for r in reps:
        r.start()
    try:
        with open_channel(",".join(r.address for r in reps), [("grpc.enable_retries", 0)]) as ch:
            grpc.channel_ready_future(ch).result(timeout=10)
            stub = pb_grpc.PredictorStub(ch)
            assert burst(stub, 300)[0] == 0
            per = [predicts(r) for r in reps]
            assert min(per) >= 70, per  # round robin: ~100 each

            reps[0].proc.send_signal(signal.SIGTERM)  # a drain (rollout, scale-in)
            time.sleep(0.2)
            before = [predicts(r) for r in reps[1:]]
            failed, _ = burst(stub, 300)
            assert failed == 0  # NOT_SERVING and GOAWAY: no new call goes there
            after = [predicts(r) for r in reps[1:]]
            gained = [a - b for a, b in zip(after, before, strict=True)]
            assert sum(gained) == 300 and min(gained) >= 100, gained

            reps[1].proc.send_signal(signal.SIGKILL)  # a crash
            reps[1].proc.wait(10)
            before = [predicts(reps[2])]
            failed, first_ok = burst(stub, 300)
            # at most the calls already on their way to the dead replica fail (the
            # consumer retries those); every later call reaches the survivor
            assert failed <= 2, failed
            assert predicts(reps[2]) - before[0] == 300 - failed
            assert first_ok is not None and first_ok < 1.0, first_ok
    finally:
        for r in reps:
            r.stop()


@pytest.mark.parametrize("impl", ["native", "python"])
def test_connections_are_recycled_at_max_age_and_no_call_fails(tmp_path, impl):
    """A server closes each client connection after max_connection_age_seconds (GOAWAY), so a
    client balancing over replicas re-resolves and reconnects (a new replica gets work);
    calls keep succeeding through every recycle."""
    srv = ServerProcess(tmp_path / "s", impl=impl,
                        env={"VOLSPIKE_MAX_CONNECTION_AGE_SECONDS": "1"}).start()  # fmt: skip
    states: list[grpc.ChannelConnectivity] = []
    try:
        with grpc.insecure_channel(srv.address) as ch:
            ch.subscribe(states.append, try_to_connect=True)
            stub = pb_grpc.PredictorStub(ch)
            end, calls = time.monotonic() + 4.0, 0
            while time.monotonic() < end and calls < 20_000:
                assert len(stub.Predict(REQ, timeout=5).probabilities) == 1
                calls += 1
            ready = states.count(grpc.ChannelConnectivity.READY)
            assert ready >= 3, (ready, states)  # connected, then recycled at least twice
            assert calls > 100
    finally:
        srv.stop()


@pytest.mark.parametrize("impl", ["native", "python"])
def test_a_rollback_across_two_replicas_under_traffic_fails_no_call(tmp_path, impl):
    """Two replicas read one model config (a ConfigMap in Kubernetes: here one file, the
    second replica's a symlink to it); six switches while four clients call through the
    balanced channel, by no name and by the service's stable name: no call fails, each
    replica verifies, warms and swaps on its own, and both end on the last artifact."""
    from server.rollback import set_artifact

    reps = [ServerProcess(tmp_path / f"r{i}", impl=impl, artifact="xgb-v1") for i in range(2)]
    reps[0].start()
    reps[1].workdir.mkdir(parents=True)
    reps[1].model_config.symlink_to(reps[0].model_config)
    reps[1].start()
    addrs = ",".join(r.address for r in reps)
    stop, failures, seen = threading.Event(), [], {}
    lock = threading.Lock()

    def client(name: str) -> None:
        own = [("grpc.use_local_subchannel_pool", 1)]
        req = pb.PredictRequest(model=name, packed=REQ.packed)
        with open_channel(addrs, own) as ch:
            stub = pb_grpc.PredictorStub(ch)
            deadline = time.monotonic() + 60
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    art = stub.Predict(req, timeout=5).artifact
                except grpc.RpcError as err:
                    with lock:
                        failures.append(f"{name or '-'}: {err.code()} {err.details()}")
                    continue
                with lock:
                    seen[art] = seen.get(art, 0) + 1

    threads = [threading.Thread(target=client, args=(n,)) for n in ("", "volspike") * 2]
    for t in threads:
        t.start()
    try:
        for i in range(6):
            set_artifact(reps[0].model_config, ("xgb-v2", "xgb-v1")[i % 2])
            time.sleep(0.6)
        set_artifact(reps[0].model_config, "xgb-v2")
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    try:
        assert not failures, failures[:5]
        assert seen.get("xgb-v1", 0) > 50 and seen.get("xgb-v2", 0) > 50, seen
        for r in reps:  # each replica swapped on its own, and serves the last artifact
            with grpc.insecure_channel(r.address) as ch:
                info = pb_grpc.PredictorStub(ch).ModelInfo(pb.ModelInfoRequest(), timeout=5)
            assert info.artifact == "xgb-v2", (r.address, info.artifact)
            assert r.log.read_text().count("active model is now") >= 7
    finally:
        for r in reps:
            r.stop()


def test_a_malformed_server_list_stops_the_consumer_naming_it():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "consumer", "--server", "a.example:1,b.example:2"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "--server: server address 'a.example' in a list is not an IP literal" in out.stderr
