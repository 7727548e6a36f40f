from __future__ import annotations

from pathlib import Path

import pytest

from compiled_models import dataset, train

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = tuple(spec.name for spec in train.SPECS)


def artifact_dir(name: str) -> Path:
    path = ROOT / "compiled_models" / name
    if not (path / "manifest.json").exists():
        pytest.fail(f"artifact {name} is not built: run `make models`")
    return path


def pytest_collection_modifyitems(items) -> None:
    """Tests that start real processes are `slow`; `make test-fast` runs the rest, and the
    two servers' differential (marked fast_tier: both servers, ~6 s) so a divergence between
    them is caught by the fast tier too."""
    for item in items:
        if item.get_closest_marker("fast_tier"):
            continue
        if {"server", "pipeline"} & set(Path(item.fspath).parts[-3:-1]):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def real_dataset() -> dataset.Dataset:
    return dataset.build()


# --- real processes on 127.0.0.1 with free ports, stopped by PID --------------------

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import grpc  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

from tools.procs import free_port  # noqa: E402

_STARTED: list[subprocess.Popen] = []  # every process a test started, reaped at the end


@pytest.fixture(scope="session", autouse=True)
def _reap_processes():
    """A test that fails before stopping its processes must not leave them running."""
    yield
    for proc in _STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


NATIVE_SERVER = ROOT / "server" / "native" / "volspike-server"
SERVER_IMPLS = ("native", "python")  # native (Go front end) is what `make serve` runs


@dataclass
class ServerProcess:
    workdir: Path
    artifact: str = "xgb-v2"
    servable: tuple[str, ...] = ("xgb-v1", "baseline-rv60")  # answerable by name
    impl: str = "native"
    env: dict = field(default_factory=dict)
    workers: int = 1
    port: int = field(default_factory=free_port)
    metrics_port: int = 0  # 0: pick free ports, one per worker
    proc: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        if not self.metrics_port:
            self.metrics_port = free_port(span=self.workers)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def model_config(self) -> Path:
        return self.workdir / "model.toml"

    @property
    def log(self) -> Path:
        return self.workdir / "server.log"

    def start(self, wait_serving: bool = True) -> ServerProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.model_config.exists():
            names = ", ".join(f'"{n}"' for n in self.servable)
            self.model_config.write_text(f'artifact = "{self.artifact}"\nservable = [{names}]\n')
        args = [
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--model-config",
            str(self.model_config),
            "--pid-file",
            str(self.workdir / "server.pid"),
        ]
        if self.impl == "native":
            if not NATIVE_SERVER.exists():
                pytest.fail(f"{NATIVE_SERVER} is not built: run `make native`")
            if self.workers != 1:
                raise ValueError("the native server is one process using every core")
            cmd = [str(NATIVE_SERVER), *args]
        else:
            cmd = [sys.executable, "-m", "server", *args, "--workers", str(self.workers)]
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VOLSPIKE_RELOAD_POLL_SECONDS": "0.2",
            "OTEL_TRACES_SAMPLER": "parentbased_always_on",  # every test call is traced
            **self.env,
        }
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT
        )
        _STARTED.append(self.proc)
        if wait_serving:
            self.wait_health("SERVING")
            self.wait_workers_listening()
        return self

    def wait_workers_listening(self, timeout: float = 30.0) -> None:
        """Python workers share the port (SO_REUSEPORT): a connection made before a worker
        listens goes to its siblings for good. SERVING from one worker is not enough."""
        if self.impl != "python" or self.workers < 2:
            return
        deadline = time.monotonic() + timeout
        want = [f"worker {w} listening" for w in range(self.workers)]
        while time.monotonic() < deadline:
            text = self.log.read_text(errors="replace")
            if all(w in text for w in want):
                return
            time.sleep(0.05)
        raise TimeoutError(f"not every worker listens after {timeout} s: {self.log}")

    def health(self, service: str = "") -> str:
        with grpc.insecure_channel(self.address) as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
            return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)

    def wait_health(self, want: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.log.read_text()}")
            try:
                last = self.health()
                if last == want:
                    return
            except grpc.RpcError as exc:
                last = exc.code()
            time.sleep(0.05)
        raise TimeoutError(f"health never became {want} (last {last}): {self.log.read_text()}")

    def stop(self, timeout: float = 30.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def metrics_text(self, worker: int = 0) -> str:
        import urllib.request

        req = urllib.request.Request(
            f"http://127.0.0.1:{self.metrics_port + worker}/metrics",
            headers={"Accept": "application/openmetrics-text; version=1.0.0"},
        )
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.read().decode()
