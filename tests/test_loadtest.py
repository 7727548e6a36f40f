"""`make loadtest` (short runs): passes with the documented SLOs against a running server,
fails naming the SLO when one is out of reach, and starts its own server when none runs."""

from __future__ import annotations

import subprocess
import sys

import grpc
import pytest

from tests.conftest import ROOT, ServerProcess, free_port


def gate(host: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable,
        "-m",
        "loadtest.gate",
        "--host",
        host,
        "--duration",
        "6",
        "--users",
        "4",
        "--reports",
        str(tmp_path / "reports"),
        "--metrics-port",
        str(free_port()),
        *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=180)


@pytest.mark.slow  # starts a server and Locust
def test_gate_passes_then_fails_an_impossible_slo(tmp_path):
    srv = ServerProcess(tmp_path / "srv").start()
    try:
        ok = gate(srv.address, tmp_path)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        assert "all SLOs met" in ok.stdout
        assert (tmp_path / "reports" / "loadtest_stats.csv").exists()
        assert (tmp_path / "reports" / "loadtest.html").exists()
        bad = gate(srv.address, tmp_path, "--slo-p95-ms", "0.01", "--slo-min-rps", "1000000")
        assert bad.returncode == 1
        assert "SLO MISSED: p95 latency" in bad.stdout and "> target 0.01 ms" in bad.stdout
        assert "SLO MISSED: throughput" in bad.stdout and "< target 1e+06 req/s" in bad.stdout
    finally:
        assert srv.stop() == 0


@pytest.mark.slow  # starts a server and Locust
def test_gate_starts_and_stops_its_own_server(tmp_path):
    host = f"127.0.0.1:{free_port()}"
    run = gate(host, tmp_path, "--scenario", "batch")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "starting one for this run" in run.stdout
    with grpc.insecure_channel(host) as ch:
        try:
            grpc.channel_ready_future(ch).result(timeout=1)
            raise AssertionError("the server the gate started is still running")
        except grpc.FutureTimeoutError:
            pass
