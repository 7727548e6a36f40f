"""Health transitions and a SIGTERM drain that loses no in-flight call."""

from __future__ import annotations

import signal
import socket
import threading
import time

import grpc
import numpy as np
from grpc_health.v1 import health_pb2, health_pb2_grpc

from market.features import N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess


def in_flight(srv: ServerProcess) -> float:
    for line in srv.metrics_text().splitlines():
        if line.startswith('volspike_rpc_in_flight{method="Predict"}'):
            return float(line.split()[-1])
    return 0.0


def test_sigterm_drains_in_flight_calls_and_exits_zero(tmp_path, impl):
    """The grace period is set far above the work in flight (6 x 800k rows, ~4 s on this
    machine): with the default 10 s the test measured CPU speed on a busy machine, not
    draining. Mutation (seen failing): stop the server at SIGTERM without a grace."""
    env = {"VOLSPIKE_MAX_ROWS": "1000000", "VOLSPIKE_GRACE_SECONDS": "60"}
    srv = ServerProcess(tmp_path, env=env, impl=impl).start()
    x = np.random.default_rng(0).random((800_000, N_FEATURES)).astype(np.float32)  # ~1 s of work
    req = pb.PredictRequest(packed=pb.PackedRows(float32_le=x.tobytes(), num_features=N_FEATURES))
    results: list[object] = []
    lock = threading.Lock()
    statuses: list[str] = []

    def watch() -> None:
        with grpc.insecure_channel(srv.address) as ch:
            stream = health_pb2_grpc.HealthStub(ch).Watch(
                health_pb2.HealthCheckRequest(service="volatility.v1.Predictor"), timeout=30
            )
            try:
                for msg in stream:
                    statuses.append(health_pb2.HealthCheckResponse.ServingStatus.Name(msg.status))
            except grpc.RpcError:
                pass

    watcher = threading.Thread(target=watch)
    watcher.start()
    with grpc.insecure_channel(srv.address) as ch:
        stub = pb_grpc.PredictorStub(ch)
        stub.Predict(req, timeout=30)  # connection up
        calls = [stub.Predict.future(req, timeout=30) for _ in range(6)]
        deadline = time.monotonic() + 10
        busy = 0.0
        while busy < 3 and time.monotonic() < deadline:
            busy = in_flight(srv)
            time.sleep(0.005)
        assert busy >= 3  # SIGTERM lands while calls are being served
        srv.proc.send_signal(signal.SIGTERM)
        for c in calls:
            try:
                r = c.result()
                with lock:
                    results.append(len(r.probabilities))
            except grpc.RpcError as err:
                with lock:
                    results.append(err.code())
        code = srv.proc.wait(30)
    watcher.join(30)
    assert results == [800_000] * 6
    assert code == 0
    assert statuses[0] == "SERVING" and "NOT_SERVING" in statuses
    assert "draining" in srv.log.read_text()


def gauge(srv: ServerProcess, name: str) -> float:
    for line in srv.metrics_text().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the scrape")


def test_a_cancelled_call_stops_costing_a_core(tmp_path, impl):
    env = {"VOLSPIKE_MAX_ROWS": "4000000", "VOLSPIKE_MAX_MESSAGE_BYTES": str(256 << 20)}
    srv = ServerProcess(tmp_path, env=env, impl=impl).start()
    x = np.random.default_rng(1).random((3_000_000, N_FEATURES)).astype(np.float32)  # 2.5-4 s
    req = pb.PredictRequest(packed=pb.PackedRows(float32_le=x.tobytes(), num_features=N_FEATURES))
    try:
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.PredictorStub(ch)
            call = stub.Predict.future(req, timeout=60)
            deadline = time.monotonic() + 30
            while gauge(srv, "volspike_rows_scoring") < len(x) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert gauge(srv, "volspike_rows_scoring") == len(x)  # uploaded, being scored
            time.sleep(0.2)
            call.cancel()
            cancelled_at = time.monotonic()
            while in_flight(srv) > 0 and time.monotonic() - cancelled_at < 10:
                time.sleep(0.01)
            stopped_after = time.monotonic() - cancelled_at
            assert stopped_after < 0.75, f"still scoring {stopped_after:.2f} s after the cancel"
            assert gauge(srv, "volspike_rows_scoring") == 0
            small = pb.PackedRows(float32_le=x[:2].tobytes(), num_features=N_FEATURES)
            assert len(stub.Predict(pb.PredictRequest(packed=small), timeout=5).probabilities) == 2
        counted = [
            ln for ln in srv.metrics_text().splitlines() if ln.startswith("volspike_rpc_requests")
        ]
        assert 'volspike_rpc_requests_total{code="CANCELLED",method="Predict"} 1.0' in counted
    finally:
        assert srv.stop() == 0


def test_new_calls_after_shutdown_are_refused(tmp_path, impl):
    srv = ServerProcess(tmp_path, impl=impl).start()
    assert srv.health("volatility.v1.Predictor") == "SERVING"
    assert srv.health("inference.GRPCInferenceService") == "SERVING"
    assert srv.stop() == 0
    try:
        srv.health()
        raise AssertionError("server still answering after exit")
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_a_worker_that_dies_stops_the_whole_server(tmp_path):
    """Python server only: the native server is one process."""
    srv = ServerProcess(tmp_path, workers=2, impl="python")
    with socket.socket() as taken:  # worker 1's metrics port is already in use
        taken.bind(("127.0.0.1", srv.metrics_port + 1))
        taken.listen()
        srv.start(wait_serving=False)
        code = srv.proc.wait(30)
    assert code != 0
    assert "exited with 1; stopping the others" in srv.log.read_text()


def test_a_second_server_on_taken_ports_leaves_the_pid_file_alone(tmp_path, impl):
    """The runbook's TargetDown mitigation, walked with the old server hung: a second
    `make serve` failed with "address already in use" and still wrote its own (dead) PID into
    the PID file, so `make rollback` and `kill $(cat .run/server.pid)` then aimed at nothing.
    The PID file is now written once both ports are the server's. (Mutation: writing it before
    binding, as before, fails this.)"""
    first = ServerProcess(tmp_path, impl=impl).start()
    pid_file = tmp_path / "server.pid"
    try:
        assert pid_file.read_text().strip() == str(first.proc.pid)  # type: ignore[union-attr]
        second = ServerProcess(
            tmp_path, impl=impl, port=first.port, metrics_port=first.metrics_port
        ).start(wait_serving=False)
        assert second.proc is not None
        assert second.proc.wait(60) != 0  # it could not have both ports
        assert pid_file.read_text().strip() == str(first.proc.pid)  # type: ignore[union-attr]
        assert first.health() == "SERVING"
    finally:
        assert first.stop() == 0
