"""Offline checks of the observability files: generated files are fresh, Prometheus 3's own
promtool accepts the config and rules and passes the rule unit tests (each alert fires and
stays silent when it should), and the dashboard uses only provisioned datasources (compose:
tests/test_compose.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from observability import dashboard, rules, slo
from tests.conftest import ROOT
from tools.obs_stack import build

OBS = ROOT / "observability"


@pytest.fixture(scope="module")
def promtool() -> Path:
    return build("prometheus") / "promtool"


def run(*cmd: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_generated_files_are_fresh():
    out = run(sys.executable, "-m", "observability.generate", "--check")
    assert out.returncode == 0, out.stderr


def test_promtool_accepts_config_and_rules(promtool):
    out = run(str(promtool), "check", "config", str(OBS / "prometheus" / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    out = run(
        str(promtool), "check", "rules", *map(str, (OBS / "prometheus" / "rules").glob("*.yml"))
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.slow  # runs promtool over every rule test
def test_promtool_rule_unit_tests_pass(promtool):
    files = sorted((OBS / "prometheus" / "tests").glob("*.yml"))
    out = run(str(promtool), "test", "rules", *map(str, files), timeout=900)  # ~40 s idle
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(files) >= 3


def test_every_alert_is_unit_tested_and_links_its_runbook():
    groups = rules.all_groups()["groups"]
    alerts = {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}
    tested = set()
    for f in (OBS / "prometheus" / "tests").rglob("*.yml"):  # hand-written and generated
        for t in yaml.safe_load(f.read_text())["tests"]:
            tested |= {c["alertname"] for c in t.get("alert_rule_test", [])}
            for c in t.get("promql_expr_test", []):  # ALERTS{alertname="..."} checks
                tested |= set(re.findall(r'ALERTS\{alertname="(\w+)"', c["expr"]))
    assert set(alerts) == tested, set(alerts) ^ tested
    for name, r in alerts.items():
        assert set(r["annotations"]) == {"summary", "description", "runbook_url"}, name
        assert r["annotations"]["runbook_url"] == f"docs/runbook.md#{name.lower()}"
        assert r["labels"]["severity"] in {"page", "ticket"}


def test_slo_thresholds_exist_as_histogram_buckets():
    from consumer.metrics import LAG_BUCKETS
    from loadtest import slo
    from server.contract_gen import RPC_DURATION

    cfg = slo.load()
    assert cfg["predict"]["p95_ms"] / 1000 in RPC_DURATION.buckets
    assert cfg["service"]["max_lag_seconds"] in LAG_BUCKETS


def test_availability_counts_only_contract_kinds_that_are_the_servers_fault():
    """The availability SLI selects error kinds by name: a misspelled kind would match
    nothing and hide every outage; a client kind (ClientDeadline, Cancelled, a bad request)
    would page on impatient clients (a 10 ms-deadline storm made ~9,700 INTERNAL counts)."""
    import tomllib

    from loadtest import slo

    kinds = tomllib.loads((ROOT / "proto" / "contract.toml").read_text())["kinds"]
    faults = slo.load()["alerting"]["server_fault_kinds"]
    assert set(faults) <= set(kinds), set(faults) - set(kinds)
    assert not {"ClientDeadline", "Cancelled", "InvalidArgument", "ResourceExhausted"} & set(faults)
    assert {"Internal", "NoModel", "DeadlineExceeded"} <= set(faults)
    # a call that began with less than the promised latency left is the client's
    from server.contract_gen import CLIENT_DEADLINE_FLOOR_MS

    assert slo.load()["predict"]["p95_ms"] == CLIENT_DEADLINE_FLOOR_MS


def test_dashboard_uses_only_provisioned_datasources():
    prov = yaml.safe_load(
        (OBS / "grafana" / "provisioning" / "datasources" / "datasources.yml").read_text()
    )
    uids = {d["uid"] for d in prov["datasources"]}
    dash = json.loads((OBS / "grafana" / "dashboards" / "volspike.json").read_text())
    used = {p["datasource"]["uid"] for p in dash["panels"]}
    used |= {t["datasource"]["uid"] for p in dash["panels"] for t in p["targets"]}
    assert used <= uids, used - uids
    prom = next(d for d in prov["datasources"] if d["uid"] == dashboard.PROMETHEUS_UID)
    links = prom["jsonData"]["exemplarTraceIdDestinations"]
    assert links == [{"name": "trace_id", "datasourceUid": dashboard.TEMPO_UID}]
    assert len(dash["panels"]) == len(dashboard.panels()) >= 15
    notes = dash["annotations"]["list"]
    assert {a["datasource"]["uid"] for a in notes} <= uids
    assert {a["name"] for a in notes} >= {"Model switch", "Model load failed"}


WINDOW = re.compile(r"(?:\[|ratio_rate|:)(\d+)([smhd])\b")  # [5m], ratio_rate3d, psi:15m


def test_panel_titles_name_their_windows():
    """A panel over 3 d was titled 30 d: every window a panel's queries use is in its title
    (written "3 d"), the error budget's being the SLO period."""
    for spec in dashboard.panels():
        want = set()
        for expr, _ in spec.queries:
            want |= {f"{n} {unit}" for n, unit in WINDOW.findall(expr)}
            if "error_budget_remaining" in expr:
                want.add(f"{slo.PERIOD_DAYS} d")
        missing = {w for w in want if not re.search(rf"\b{w}\b", spec.title)}
        assert not missing, f"{spec.title!r} uses windows {sorted(missing)} it does not name"


def _runbook_sections() -> dict[str, str]:
    text = (ROOT / "docs" / "runbook.md").read_text().split("\n# Procedures", 1)[0]
    parts = text.split("\n## ")[1:]
    return {p.split("\n", 1)[0].strip(): p for p in parts}


def test_every_alert_has_a_runbook_section_and_every_section_an_alert():
    alerts = {r["alert"] for g in rules.all_groups()["groups"] for r in g["rules"] if "alert" in r}
    sections = _runbook_sections()
    assert set(sections) == alerts, set(sections) ^ alerts
    for name, body in sections.items():
        for heading in ("**Meaning", "Impact", "Diagnosis", "Mitigation", "Verify recovery"):
            assert heading in body, f"{name}: no {heading}"


def runbook_promql() -> list[str]:
    """Every line of every ```promql block in the runbook (run live by the observability test)."""
    text = (ROOT / "docs" / "runbook.md").read_text()
    blocks = text.split("```promql\n")[1:]
    return [line for b in blocks for line in b.split("```", 1)[0].splitlines() if line.strip()]
