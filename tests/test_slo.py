"""The SLO document and observability/slo.toml state the same numbers; the gate judges both ways."""

from __future__ import annotations

import re

import pytest

from loadtest import slo
from observability import slo as spec_mod
from tests.conftest import ROOT


def test_slo_document_matches_slo_file():
    doc = (ROOT / "docs" / "slo.md").read_text()
    cfg = slo.load()
    rows = dict(re.findall(r"^\| ([^|]+?) \| ([^|]+?) \|", doc, flags=re.M))
    assert rows["Predict latency, p95"] == f"<= {cfg['predict']['p95_ms']:g} ms"
    assert rows["Predict throughput"] == f">= {cfg['predict']['min_rps']:g} req/s"
    assert rows["Predict error ratio"] == f"<= {cfg['predict']['max_error_ratio'] * 100:g} %"
    assert rows["Availability"] == f">= {cfg['service']['availability'] * 100:g} %"
    assert rows["Consumer lag"] == f"<= {cfg['service']['max_lag_seconds']:g} s"


def test_violations_name_the_slo_value_and_target():
    target = slo.Slo(p95_ms=25, min_rps=300, max_error_ratio=0.001)
    good = slo.RunResult(requests=10_000, failures=0, rps=900.0, p95_ms=4.0)
    assert slo.violations(good, target) == []
    bad = slo.RunResult(requests=1_000, failures=20, rps=120.0, p95_ms=31.0)
    missed = slo.violations(bad, target)
    assert missed == [
        "p95 latency 31.0 ms > target 25 ms",
        "throughput 120.0 req/s < target 300 req/s",
        "error ratio 2.0000% (20/1000) > target 0.1000%",
    ]
    assert slo.violations(slo.RunResult(0, 0, 0.0, 0.0), target)


def test_overrides_win_over_the_file():
    s = slo.predict_slo(p95_ms=1.5, min_rps=None)
    assert s.p95_ms == 1.5 and s.min_rps == slo.load()["predict"]["min_rps"]


def test_slo_document_states_what_the_generated_rules_compute():
    """Each SLI row names the objective the rules use; each burn-rate alert exists."""
    from observability import rules

    doc = (ROOT / "docs" / "slo.md").read_text()
    rows = dict(
        re.findall(
            r"^\| (latency|availability|errors|freshness) \| .+? \| ([0-9.]+) % \|", doc, re.M
        )
    )
    names = {r.get("alert") for g in rules.all_groups()["groups"] for r in g["rules"]}
    for sli in rules.slis():
        assert float(rows[sli.name]) == pytest.approx(sli.objective * 100), sli.name
        for kind in ("Fast", "Slow"):
            assert f"Volspike{sli.name.capitalize()}BudgetBurn{kind}" in names
    assert "14.4x" in doc and "6x" in doc
    assert [p[2] for p in rules.PAGE] == [14.4, 6.0] and [t[2] for t in rules.TICKET] == [3.0, 1.0]


def _spec(tmp_path, edit):
    import tomllib

    cfg = tomllib.loads(spec_mod.SLO_FILE.read_text())
    edit(cfg)
    lines = []
    for section, keys in cfg.items():
        lines.append(f"[{section}]")
        for k, v in keys.items():
            lines.append(f"{k} = {v!r}".replace("'", '"').replace("True", "true"))
    path = tmp_path / "slo.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    ("edit", "named"),
    [
        (lambda c: c["service"].update(availability=1.5), "service.availability = 1.5 must be"),
        (lambda c: c["predict"].pop("p95_ms"), "missing predict.p95_ms"),
        (lambda c: c["drift"].update(windw="15m"), "unknown key drift.windw"),
        (lambda c: c.update(extra={"a": 1}), "unknown section [extra]"),
        (lambda c: c["alerting"].update(server_fault_kinds=["Internall"]), "server_fault_kinds"),
        (lambda c: c["alerting"].update(client_unanswered_codes=["OK"]), "client_unanswered"),
        (lambda c: c["drift"].update(window="15 minutes"), "drift.window"),
        (lambda c: c["alerting"].update(max_offset_lag=True), "alerting.max_offset_lag"),
    ],
)
def test_a_bad_spec_is_refused_naming_what_is_wrong(tmp_path, edit, named):
    with pytest.raises(spec_mod.SloSpecError, match=re.escape(named)):
        spec_mod.load(_spec(tmp_path, edit))


def test_the_committed_spec_is_valid_and_exports_as_openslo():
    import subprocess
    import sys

    cfg = spec_mod.load()
    docs = spec_mod.openslo(cfg)
    assert [d["metadata"]["name"] for d in docs] == [
        "volspike-latency", "volspike-availability", "volspike-errors", "volspike-freshness"
    ]  # fmt: skip
    for d in docs:
        assert d["apiVersion"] == "openslo/v1" and d["kind"] == "SLO"
        spec = d["spec"]
        assert spec["timeWindow"] == [{"duration": "30d", "isRolling": True}]
        ratio = spec["indicator"]["spec"]["ratioMetric"]
        assert "[5m]" in ratio["bad"]["metricSource"]["spec"]["query"]
        assert ratio["total"]["metricSource"]["type"] == "Prometheus"
    assert docs[1]["spec"]["objectives"][0]["target"] == cfg["service"]["availability"]
    out = subprocess.run([sys.executable, "-m", "observability.slo", "--check"], cwd=ROOT,
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0 and "valid" in out.stdout


@pytest.mark.slow
def test_sloth_validates_the_spec_and_burns_on_our_windows_and_factors(tmp_path):
    """The spec exported for Sloth (a tool users of SLOs know) passes `sloth validate`;
    `sloth generate` makes rules promtool accepts, whose page and ticket alerts use the same
    window pairs, factors and objectives as our generated rules (observability/rules.py)."""
    import subprocess

    import yaml

    from observability import rules
    from tools.obs_stack import build

    sloth = build("sloth") / "sloth"
    promtool = build("prometheus") / "promtool"
    spec = tmp_path / "sloth.yml"
    spec.write_text(yaml.safe_dump(spec_mod.sloth(), sort_keys=False))
    for args in (["validate", "-i", str(spec)],
                 ["generate", "-i", str(spec), "-o", str(tmp_path / "out.yml")]):  # fmt: skip
        out = subprocess.run([str(sloth), *args], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    out = subprocess.run([str(promtool), "check", "rules", str(tmp_path / "out.yml")],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    doc = yaml.safe_load((tmp_path / "out.yml").read_text())
    term = re.compile(
        r'ratio_rate(\w+)\{[^}]*sloth_slo="(\w+)"[^}]*\} > \(([\d.e+-]+) \* ([\d.e+-]+)\)'
    )
    seen: dict[tuple[str, str], set] = {}
    for g in doc["groups"]:
        for r in g["rules"]:
            if "alert" not in r:
                continue
            for w, name, factor, budget in term.findall(r["expr"]):
                key = (name, r["labels"]["severity"])
                seen.setdefault(key, set()).add((w, float(factor), round(float(budget), 9)))
    want = {}
    for sli in rules.slis():
        for sev, pairs in (("page", rules.PAGE), ("ticket", rules.TICKET)):
            want[(sli.name, sev)] = {(w, f, round(sli.budget, 9))
                                    for long, short, f in pairs for w in (long, short)}  # fmt: skip
    assert seen == want
