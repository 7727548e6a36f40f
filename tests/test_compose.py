"""observability/compose.yaml read as a user runs it (no Docker engine here, so statically):
it validates against the compose spec and mounts what exists; `make rollback` on the host
reaches the server through a mounted folder; every healthcheck calls a program its image has;
the drift report `make drift` writes on the host reaches the consumer (and so Prometheus);
Prometheus's targets are set per environment, and promtool accepts the config with the
local targets and with what compose mounts in /etc/prometheus."""

from __future__ import annotations

import ast
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
import yaml

from consumer.config import ConsumerSettings
from tests.conftest import ROOT
from tools.obs_stack import build

OBS = ROOT / "observability"
COMPOSE = OBS / "compose.yaml"
# what each image has to run a healthcheck with (checked against the images' own docs):
# prom/prometheus is built on busybox (wget); grafana/grafana on Alpine (busybox wget);
# apache/kafka ships its scripts; the project's image is python:3.11-slim with the project;
# grafana/tempo is distroless since 2.10 (busybox removed: no shell, wget or curl) and its
# binary checks its own /ready with `-health` since 3.0 (grafana/tempo#6536).
IMAGE_HAS = {
    "prom/prometheus": {"wget"},
    "grafana/grafana": {"wget"},
    "apache/kafka": {"/opt/kafka/bin/kafka-broker-api-versions.sh"},
    "grafana/tempo": {"/tempo"},
    "build": {"python"},
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def mounts(svc: dict) -> list[dict]:
    """Every volume in long form: {type, source (resolved on the host), target, ...}."""
    out = []
    for vol in svc.get("volumes", []):
        if isinstance(vol, str):
            src, dst, *mode = vol.split(":")
            vol = {"type": "bind", "source": src, "target": dst, "read_only": mode == ["ro"]}
        out.append({**vol, "source": (OBS / vol["source"]).resolve()})
    return out


def workdir() -> PurePosixPath:
    lines = re.findall(r"^WORKDIR\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    return PurePosixPath(lines[-1])


def host_path(svc: dict, container: PurePosixPath) -> Path | None:
    """Where ``container`` (absolute) lives on the host through the service's bind mounts."""
    for m in mounts(svc):
        target = PurePosixPath(m["target"])
        if m["type"] == "bind" and container.is_relative_to(target):
            return m["source"] / container.relative_to(target)
    return None


def test_compose_is_valid_and_mounts_only_existing_files(compose):
    out = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    for name, svc in compose["services"].items():
        for m in mounts(svc):
            created = m.get("bind", {}).get("create_host_path")  # a run-time folder
            assert created or m["source"].exists(), f"{name} mounts {m['source']}: missing"
        if "build" in svc:
            assert (OBS / svc["build"]["context"] / svc["build"]["dockerfile"]).exists()
    images = {
        s["image"].split(":")[0]: s["image"] for s in compose["services"].values() if "image" in s
    }
    assert images["prom/prometheus"] == "prom/prometheus:v3.16.0"  # what the tests build
    pom = (ROOT / "kafka" / "pom.xml").read_text()
    version = images["apache/kafka"].split(":")[1]
    assert f"<kafka.version>{version}</kafka.version>" in pom


def test_make_rollback_reaches_the_server_through_a_mounted_folder(compose):
    """`make rollback` rewrites MODEL_CONFIG (.run/model.toml) by a rename; a single-file bind
    mount keeps showing the file it was given, so the server must read the config through a
    mounted folder that is the host's MODEL_CONFIG folder."""
    svc = compose["services"]["server"]
    command = " ".join(svc["command"]) if isinstance(svc["command"], list) else svc["command"]
    in_container = re.search(r"--model-config[ =](\S+)", command).group(1)
    config = workdir() / in_container
    default = re.search(r"^MODEL_CONFIG \?= (\S+)", (ROOT / "Makefile").read_text(), re.M)
    assert host_path(svc, config) == ROOT / default.group(1), (config, mounts(svc))
    covering = [m for m in mounts(svc) if config.is_relative_to(m["target"])]
    assert covering and all(PurePosixPath(m["target"]) != config for m in covering), covering
    # started like `make serve`: the tracked default copied in when missing
    assert f"test -e {in_container} || cp config/model.toml {in_container}" in command
    # a container PID written into the shared folder would make the host signal another process
    assert "--pid-file" not in command and "PID_FILE" not in json.dumps(svc.get("environment"))
    header = COMPOSE.read_text().split("\nname:")[0]
    assert "make rollback" in header and default.group(1) in header


def test_every_healthcheck_calls_a_program_its_image_has(compose):
    services = compose["services"]
    for name, svc in services.items():
        check = svc.get("healthcheck")
        if check is None:
            continue
        kind, program, *_ = check["test"]
        assert kind == "CMD", f"{name}: {kind} needs a shell in the image"
        image = "build" if "build" in svc else svc["image"].split(":")[0]
        assert program in IMAGE_HAS[image], f"{name}: {program} is not in {image}"
    tempo = services["tempo"]
    major = int(tempo["image"].split(":")[1].split(".")[0])
    assert major >= 3 and tempo["healthcheck"]["test"][1:] == ["/tempo", "-health"]
    for name, svc in services.items():  # whatever waits for a service's health has one
        for dep, cond in svc.get("depends_on", {}).items():
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits on {dep}'s health"


def report_defaults() -> dict[str, str]:
    """drift/report.py's --live and --out defaults (ROOT / "a" / "b"), read from its source:
    the drift environment (Evidently) is not this one."""
    tree = ast.parse((ROOT / "drift" / "report.py").read_text())
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flag = node.args[0].value if node.args else None
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
            if flag in ("--live", "--out") and default is not None:
                parts = [n for n in ast.walk(default) if isinstance(n, ast.Constant)]
                out[flag] = "/".join(n.value for n in sorted(parts, key=lambda n: n.col_offset))
    return out


def test_the_drift_report_reaches_prometheus_in_compose(compose):
    """`make drift` on the host reads the consumer's live sample and writes the summary the
    consumer exports (volspike_drift_report_timestamp_seconds, what DriftReportStale
    watches): both folders must be the consumer's through mounts, or the alert can never
    see a report."""
    svc = compose["services"]["consumer"]
    settings = ConsumerSettings()
    defaults = report_defaults()
    assert set(defaults) == {"--live", "--out"}, defaults
    sample = Path(settings.live_sample_dir).relative_to(ROOT)
    summary = Path(settings.drift_report_metrics).relative_to(ROOT)
    assert str(sample) == defaults["--live"]
    assert str(summary.parent) == defaults["--out"] and summary.name == "metrics.json"
    for rel in (sample, summary):
        assert host_path(svc, workdir() / rel) == ROOT / rel, (rel, mounts(svc))


def compose_etc_prometheus(compose: dict, into: Path) -> Path:
    """The container's /etc/prometheus as compose mounts it, copied into ``into``."""
    svc = compose["services"]["prometheus"]
    etc = PurePosixPath("/etc/prometheus")
    for m in mounts(svc):
        dst = into / PurePosixPath(m["target"]).relative_to(etc)
        if m["source"].is_dir():
            shutil.copytree(m["source"], dst)
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(m["source"], dst)
    config = next(a for a in svc["command"] if a.startswith("--config.file="))
    return into / PurePosixPath(config.split("=", 1)[1]).relative_to(etc)


def targets(config: Path) -> dict[str, list[str]]:
    cfg = yaml.safe_load(config.read_text())
    out = {}
    for job in cfg["scrape_configs"]:
        (files,) = [f for sd in job["file_sd_configs"] for f in sd["files"]]
        groups = json.loads((config.parent / files).read_text())
        out[job["job_name"]] = [t for g in groups for t in g["targets"]]
    return out


@pytest.fixture(scope="module")
def promtool() -> Path:
    return build("prometheus") / "promtool"


def promtool_accepts(promtool: Path, config: Path) -> None:
    out = subprocess.run(
        [str(promtool), "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0 and "WARNING" not in text, text  # a missing targets file warns


def test_local_targets_are_the_make_ports_and_promtool_accepts_them(promtool):
    config = OBS / "prometheus" / "prometheus.yml"
    promtool_accepts(promtool, config)
    make = (ROOT / "Makefile").read_text()

    def port(var: str) -> str:
        return re.search(rf"^{var} \?= (\d+)", make, re.M).group(1)

    assert targets(config) == {
        "volspike-server": [f"127.0.0.1:{port('METRICS_PORT')}"],
        "volspike-consumer": [f"127.0.0.1:{port('CONSUMER_METRICS_PORT')}"],
    }


def test_compose_targets_are_the_compose_services_and_promtool_accepts_them(
    promtool, compose, tmp_path
):
    config = compose_etc_prometheus(compose, tmp_path / "etc-prometheus")
    promtool_accepts(promtool, config)
    services = compose["services"]
    jobs = targets(config)
    assert set(jobs) == {"volspike-server", "volspike-consumer"}
    for job, hosts in jobs.items():
        assert hosts, job
        for target in hosts:
            host, port = target.rsplit(":", 1)
            assert host == job.removeprefix("volspike-") and host in services, target
            published = {p.rsplit(":", 1)[1] for p in services[host].get("ports", [])}
            assert port in published, f"{target}: {host} listens on {published}"
    command = shlex.join(services["consumer"]["command"])
    assert f"--metrics-port {jobs['volspike-consumer'][0].rsplit(':', 1)[1]}" in command
