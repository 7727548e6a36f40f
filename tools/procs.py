"""Small helpers shared by the demo and the pipeline benchmark: start the real parts as
plain processes, read Prometheus metrics back."""

from __future__ import annotations

import collections
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent


_HANDED_OUT: set[int] = set()
_HANDED_ORDER: collections.deque[int] = collections.deque()  # oldest first
_REMEMBER = 8_000  # of ~28,000 ephemeral ports: a port is forgotten long after its test


def free_port(span: int = 1) -> int:
    """A free loopback port; with ``span`` > 1 the first of that many consecutive free
    ports (a server with N workers serves metrics on port .. port + N - 1).

    A port is free only until someone binds it, and the kernel readily hands the same
    ephemeral port to two probes in a row, so two calls made before either port is
    bound (a server's gRPC and metrics ports) could get the same answer: ports this
    process has handed out are never handed out again."""
    while len(_HANDED_ORDER) > _REMEMBER:  # a long-lived process: forget the oldest ports
        _HANDED_OUT.discard(_HANDED_ORDER.popleft())
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        wanted = range(base, base + span)
        if any(p in _HANDED_OUT for p in wanted):
            continue
        socks = []
        try:
            for p in wanted:
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            _HANDED_OUT.update(wanted)
            _HANDED_ORDER.extend(wanted)
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()


def cpu_seconds(pid: int, thread: int | None = None) -> float:
    """CPU seconds (user + system) of a process, or of one of its threads."""
    path = f"/proc/{pid}/task/{thread}/stat" if thread else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start(module: str, *args: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


NATIVE_SERVER = ROOT / "server" / "native" / "volspike-server"
SERVER_IMPLS = ("native", "python")


def start_server(
    impl: str, *args: str, log: Path, env: dict | None = None, pin: str | None = None
) -> subprocess.Popen:
    """The gRPC server: ``native`` (the Go front end, `make native`) or ``python``
    (``python -m server``); both take the same flags (``--workers`` is Python's only).
    ``pin`` runs it under ``taskset -c pin``."""
    if impl == "native":
        if not NATIVE_SERVER.exists():
            raise FileNotFoundError(f"{NATIVE_SERVER} is not built: run `make native`")
        cmd = [str(NATIVE_SERVER), *args]
    elif impl == "python":
        cmd = [sys.executable, "-m", "server", *args]
    else:
        raise ValueError(f"unknown server {impl!r}; choose from {SERVER_IMPLS}")
    if pin is not None:
        cmd = ["taskset", "-c", pin, *cmd]
    log.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )


def is_serving(address: str, service: str = "", timeout: float = 1.0) -> bool:
    """Whether the gRPC server at ``address`` answers health SERVING."""
    try:
        with grpc.insecure_channel(address) as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout
            )
            return r.status == health_pb2.HealthCheckResponse.SERVING
    except grpc.RpcError:
        return False


def wait_serving(address: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not is_serving(address):
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"server on {address} not SERVING after {timeout} s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen | None, timeout: float = 30) -> int | None:
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def scrape(port: int) -> dict[str, float]:
    """Metric samples of a /metrics page, summed over labels not named in the key."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
        base = name.split("{", 1)[0]
        if "{" in name and "_bucket{" not in name:
            out[base] = out.get(base, 0.0) + float(value)
    return out


def quantile_from_buckets(before: dict, after: dict, metric: str, q: float) -> float | None:
    """q-quantile (upper bucket bound) of a histogram's observations between scrapes."""
    buckets = []
    for k, v in after.items():
        if k.startswith(metric + "_bucket{") and 'le="' in k:
            le = k.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets.append((bound, v - before.get(k, 0.0)))
    merged: dict[float, float] = {}
    for bound, n in buckets:
        merged[bound] = merged.get(bound, 0.0) + n
    items = sorted(merged.items())
    if not items or items[-1][1] <= 0:
        return None
    target = q * items[-1][1]
    for bound, cum in items:
        if cum >= target:
            return bound
    return None
