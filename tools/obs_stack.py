"""Prometheus and Jaeger as plain processes on loopback, from the cached builds of
tools/build_go_tools.sh, with the project's own config files (observability/). Used by the
live observability test, `make demo` and `make dashboard-snapshot`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from tools.procs import ROOT, free_port, stop

CACHE = Path(os.environ.get("VOLSPIKE_TOOLS_CACHE", Path.home() / ".cache" / "volspike-tools"))
PROMETHEUS_BIN = CACHE / "prometheus-v0.316.0" / "bin"
JAEGER_BIN = CACHE / "jaeger-v1.76.0" / "bin"
OBS = ROOT / "observability"


def build(tool: str) -> Path:
    """The tool's bin directory, building it once if it is not cached."""
    out = subprocess.run(
        [str(ROOT / "tools" / "build_go_tools.sh"), tool],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def get_json(url: str, params: dict | None = None, timeout: float = 10.0) -> dict:
    if params:
        url += "?" + urllib.parse.urlencode(params, doseq=True)
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


@dataclass
class Prometheus:
    """observability/prometheus/ copied into ``workdir`` with the targets filled in and the
    intervals shortened; exemplar storage on, as compose runs it."""

    workdir: Path
    port: int = field(default_factory=free_port)
    interval: str = "1s"
    pin: str | None = None  # taskset -c PIN (benchmarks)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, server: list[str], consumer: list[str]) -> Prometheus:
        conf = self.workdir / "prometheus"
        shutil.rmtree(conf, ignore_errors=True)
        shutil.copytree(OBS / "prometheus", conf, ignore=shutil.ignore_patterns("tests"))
        for name, targets in (("server", server), ("consumer", consumer)):
            (conf / "targets" / f"{name}.json").write_text(
                json.dumps([{"targets": list(targets)}] if targets else [])
            )
        cfg = yaml.safe_load((conf / "prometheus.yml").read_text())
        cfg["global"].update(scrape_interval=self.interval, evaluation_interval=self.interval)
        for job in cfg["scrape_configs"]:
            job.setdefault("file_sd_configs", [{}])[0]["refresh_interval"] = "1s"
        (conf / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = (self.workdir / "prometheus.log").open("ab")
        self.proc = subprocess.Popen(
            [
                *(["taskset", "-c", self.pin] if self.pin else []),
                str(build("prometheus") / "prometheus"),
                f"--config.file={conf / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--enable-feature=exemplar-storage",
                "--web.enable-lifecycle",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self._wait_ready()
        return self

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None  # started by start()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("prometheus never became ready")

    def log(self) -> str:
        return (self.workdir / "prometheus.log").read_text()

    def api(self, path: str, **params) -> dict:
        out = get_json(f"{self.url}/api/v1/{path}", params)
        if out.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {out}")
        return out["data"]

    def query(self, expr: str) -> list:
        return self.api("query", query=expr)["result"]

    def query_range(self, expr: str, start: float, end: float, step: float = 1.0) -> list:
        return self.api("query_range", query=expr, start=start, end=end, step=step)["result"]

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class Jaeger:
    """Jaeger v2 with observability/jaeger/config.yaml: OTLP/gRPC in, in-memory store."""

    workdir: Path
    otlp_port: int = field(default_factory=free_port)
    query_port: int = field(default_factory=free_port)
    query_grpc_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def otlp_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.query_port}"

    def start(self) -> Jaeger:
        env = {
            **os.environ,
            "JAEGER_HOST": "127.0.0.1",
            "JAEGER_OTLP_GRPC_PORT": str(self.otlp_port),
            "JAEGER_QUERY_HTTP_PORT": str(self.query_port),
            "JAEGER_QUERY_GRPC_PORT": str(self.query_grpc_port),
            "OTEL_TRACES_EXPORTER": "none",  # Jaeger's own spans go nowhere
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(build("jaeger") / "jaeger"), "--config", str(OBS / "jaeger" / "config.yaml")],
            env=env,
            stdout=(self.workdir / "jaeger.log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.workdir / "jaeger.log").read_text()[-2000:])
            try:
                get_json(f"{self.url}/api/services", timeout=1)
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("jaeger never answered")

    def trace(self, trace_id: str) -> dict | None:
        try:
            data = get_json(f"{self.url}/api/traces/{trace_id}")["data"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise
        return data[0] if data else None

    def search(
        self, service: str, operation: str, tags: dict[str, str], start: float, limit: int = 20
    ) -> list[dict]:
        """Traces with one span matching the service, operation and every tag (a tag matches
        the span's attributes, its scope's, its resource's or its events'), started after
        ``start`` (unix seconds). Jaeger's query API (/api/traces); api/v3's HTTP search in
        v1.76.0 has no attribute filter."""
        return get_json(
            f"{self.url}/api/traces",
            {
                "service": service,
                "operation": operation,
                "tags": json.dumps(tags),
                "start": int(start * 1e6),
                "end": int((time.time() + 60) * 1e6),
                "limit": limit,
            },
        )["data"]

    def stop(self) -> None:
        stop(self.proc)
