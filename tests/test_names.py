"""Every name is the contract's (proto/contract.toml, #21 item 1): a static scan, no process.

Each `volspike_*` metric name written in the sources of both servers, the consumer,
observability/*.py, tools/dlq.py, docs/*.md, the generated Prometheus rules and the Grafana
dashboard JSON must be a family of the contract ([metrics], [consumer.metrics]; a histogram's
_bucket/_count/_sum, a counter's name without _total as prometheus_client takes it) or a rule
the rules file records (names with ':', and volspike_slo_info). The label values written
next to them (result, dead-letter reason, error type and kind, eviction) must be the
contract's too. A failure names the file, the name and where it is not defined.

Mutations, each applied once and seen failing here:
- (a) rename a contract metric (volspike_rpc_requests_total -> volspike_rpc_calls_total in
  proto/contract.toml) and regenerate: before, only a typed-out name in one test caught it;
  now test_every_metric_name_written_anywhere_is_the_contracts names the rules file, the
  dashboard JSON and the docs that still say volspike_rpc_requests_total.
- (b) rename the consumer's too_large dead-letter reason (in proto/contract.toml, and
  regenerate): test_every_label_value_written_anywhere_is_the_contracts names docs/runbook.md's
  `--reason too_large`; and test_the_consumer_dead_letters_an_oversized_tick_as_too_large
  fails on the reason the consumer now sends.
"""

from __future__ import annotations

import ast
import re
import tomllib
from functools import cache
from pathlib import Path

import grpc
import pytest
import yaml
from prometheus_client import CollectorRegistry

from tests.conftest import ROOT
from tools import gen_contract

RULES_FILE = ROOT / "observability" / "prometheus" / "rules" / "volspike.rules.yml"
NAME = re.compile(r"volspike_[A-Za-z0-9_:]*")
# a PromQL selector: family{matchers}; a matcher label op "value" (\" inside Python strings)
SELECTOR = re.compile(r"(volspike_[A-Za-z0-9_]+)\s*\{([^{}]*)\}")
MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*\\?"((?:[^"\\]|\\[^"])*)\\?"')


def scanned_files() -> list[Path]:
    """What the issue lists: both servers, the consumer, observability code, the tools that
    read the names, the docs, the generated rules and dashboards."""
    files = [*(ROOT / "server").glob("*.py"), *(ROOT / "consumer").glob("*.py")]
    native = ROOT / "server" / "native"
    files += [p for p in native.rglob("*.go") if p.relative_to(native).parts[0] != "gen"]
    files += [*(ROOT / "observability").glob("*.py"), ROOT / "tools" / "dlq.py"]
    files += [*(ROOT / "docs").glob("*.md"), RULES_FILE]
    files += [*(ROOT / "observability" / "grafana").rglob("*.json")]
    return sorted(files)


@cache
def contract() -> dict:
    return gen_contract.load()


@cache
def families() -> dict[str, dict]:
    c = contract()
    return {m["name"]: m for m in (*c["metrics"].values(), *c["consumer"]["metrics"].values())}


@cache
def recorded() -> set[str]:
    """The names the rules file records (its own definitions)."""
    doc = yaml.safe_load(RULES_FILE.read_text())
    return {r["record"] for g in doc["groups"] for r in g["rules"] if "record" in r}


@cache
def defined_names() -> set[str]:
    out = set(recorded())
    for name, m in families().items():
        out.add(name)
        if m["type"] == "counter":
            out.add(name.removesuffix("_total"))  # prometheus_client's own spelling
        if m["type"] == "histogram":
            out |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return out


def undefined_names(text: str) -> set[str]:
    """Names not defined. A name cut short by a placeholder ({w}, {0}, %s in a source that
    builds it; <sli>, * in a doc that spells a pattern) is a prefix: some defined name must
    start with it."""
    bad = set()
    for m in NAME.finditer(text):
        name, rest = m.group(), text[m.end() : m.end() + 1]
        if name in defined_names():
            continue
        if rest in ("{", "%", "<", "*") and any(d.startswith(name) for d in defined_names()):
            continue
        bad.add(name)
    return bad


def test_every_metric_name_written_anywhere_is_the_contracts():
    """Mutation (a) in the module docstring fails here."""
    found = {
        str(p.relative_to(ROOT)): sorted(undefined_names(p.read_text())) for p in scanned_files()
    }
    found = {k: v for k, v in found.items() if v}
    assert not found, f"names proto/contract.toml does not define: {found}"


@cache
def allowed_values() -> dict[tuple[str, str], set[str]]:
    """(family, label) -> the values the contract allows."""
    c, cc = contract(), contract()["consumer"]
    reasons = {*cc["tick_reasons"], *cc["pipeline_reasons"]}
    codes = {s.name for s in grpc.StatusCode}
    server = {m["name"] for m in c["metrics"].values()}
    out = {}
    for name, m in families().items():
        for label in m["labels"]:
            values = {
                "result": set(c["results"].values()),
                "reason": reasons,
                "why": set(cc["evictions"]),
                "code": codes | ({"BAD_ANSWER"} if "retries" in name else set()),
                "type": set(c["kinds"]) if name in server else set(cc["error_types"]),
            }.get(label)
            if values is not None:
                out[(name, label)] = values
    return out


def _family_of(name: str) -> str | None:
    for suffix in ("", "_bucket", "_count", "_sum"):
        if suffix and name.endswith(suffix) and name.removesuffix(suffix) in families():
            return name.removesuffix(suffix)
        if not suffix and name in families():
            return name
    return None


def undefined_values(text: str) -> set[str]:
    """family{label="value"} selectors (PromQL in rules, dashboards, docs and code) and
    `--reason value` (tools/dlq.py in the runbook) whose value is not the contract's."""
    bad = set()
    for sel in SELECTOR.finditer(text):
        family = _family_of(sel.group(1))
        for label, op, value in MATCHER.findall(sel.group(2)):
            allowed = allowed_values().get((family or "", label))
            if allowed is None:
                continue
            alternatives = value.split("|") if op in ("=~", "!~") else [value]
            for v in alternatives:
                if re.fullmatch(r"\w+", v) and v not in allowed:
                    bad.add(f'{sel.group(1)}{{{label}="{v}"}}')
    reasons = allowed_values()[("volspike_consumer_dead_lettered_total", "reason")]
    for m in re.finditer(r"--reason[ =]([a-z_]+)", text):
        if m.group(1) not in reasons:
            bad.add(f"--reason {m.group(1)}")
    return bad


LABELLED = {  # Python: metric attribute -> (family, label) of its first .labels() argument
    "dead_lettered": ("volspike_consumer_dead_lettered_total", "reason"),
    "reloads": ("volspike_model_reloads_total", "result"),
    "symbols_evicted": ("volspike_consumer_symbols_evicted_total", "why"),
}


def python_label_literals(path: Path) -> set[str]:
    """String constants passed where the code writes a label value: .labels() of the metrics
    above, the consumer's errors.labels(), model_load.labels(artifact, result), and the
    second argument of BadTick (the dead-letter reason)."""
    bad = set()
    consumer = path.parent.name == "consumer"
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        f, args = node.func, node.args
        checks: list[tuple[ast.expr, tuple[str, str]]] = []
        if (
            isinstance(f, ast.Attribute)
            and f.attr == "labels"
            and isinstance(f.value, ast.Attribute)
        ):
            metric = f.value.attr
            if metric in LABELLED and args:
                checks.append((args[0], LABELLED[metric]))
            if metric == "errors" and consumer and args:
                checks.append((args[0], ("volspike_consumer_errors_total", "type")))
            if metric == "model_load" and len(args) > 1:
                checks.append((args[1], ("volspike_model_load_duration_seconds", "result")))
        if isinstance(f, ast.Name) and f.id == "BadTick" and len(args) > 1:
            checks.append((args[1], ("volspike_consumer_dead_lettered_total", "reason")))
        for arg, key in checks:
            if isinstance(arg, ast.Constant) and arg.value not in allowed_values()[key]:
                bad.add(f"{path.name}:{node.lineno}: {key[1]}={arg.value!r}")
    return bad


def go_label_literals(path: Path) -> set[str]:
    """reloads.WithLabelValues("result"), modelLoad.WithLabelValues(artifact, "result")."""
    bad = set()
    allowed = allowed_values()[("volspike_model_reloads_total", "result")]
    text = path.read_text()
    for m in re.finditer(
        r'(?:reloads\.WithLabelValues\(|modelLoad\.WithLabelValues\([^,()]*,\s*)"(\w+)"', text
    ):
        if m.group(1) not in allowed:
            bad.add(f"{path.name}: result={m.group(1)!r}")
    return bad


def test_every_label_value_written_anywhere_is_the_contracts():
    """Mutation (b) in the module docstring fails here (the runbook's --reason too_large)."""
    found: dict[str, list[str]] = {}
    for p in scanned_files():
        # rule_tests.py writes promtool input series; their values are made up, not read
        bad = set() if p.name == "rule_tests.py" else undefined_values(p.read_text())
        if p.suffix == ".py" and p.parent.name in ("server", "consumer"):
            bad |= python_label_literals(p)
        if p.suffix == ".go":
            bad |= go_label_literals(p)
        if bad:
            found[str(p.relative_to(ROOT))] = sorted(bad)
    assert not found, f"label values proto/contract.toml does not define: {found}"


def test_the_scan_sees_what_it_must():
    """The scan is no vacuous pass: it finds names and values where they are written, and
    flags an undefined one (the check the two tests above rely on)."""
    assert undefined_names("rate(volspike_rpc_requests_total[1m])") == set()
    assert undefined_names("volspike_rpc_requests_totl") == {"volspike_rpc_requests_totl"}
    assert undefined_names('f"volspike_slo:{name}_errors"') == set()  # a prefix the rules record
    assert undefined_names("volspike_nope:{w}") == {"volspike_nope:"}
    assert undefined_names("volspike_rpc_duration_seconds_bucket") == set()
    assert undefined_names("volspike_rpc_requests_total_bucket") == {
        "volspike_rpc_requests_total_bucket"
    }
    assert undefined_values('volspike_model_reloads_total{result="failed"}') == set()
    assert undefined_values('volspike_model_reloads_total{result="error"}') == {
        'volspike_model_reloads_total{result="error"}'
    }
    assert undefined_values('volspike_consumer_dead_lettered_total{reason=~"null|huge"}') == {
        'volspike_consumer_dead_lettered_total{reason="huge"}'
    }
    assert undefined_values('volspike_rpc_errors_total{type="Oops"}') != set()
    assert undefined_values('volspike_consumer_errors_total{type="commit"}') == set()
    assert undefined_values("tools.dlq show --reason too_big") == {"--reason too_big"}
    texts = [p.read_text() for p in scanned_files()]
    assert sum(len(NAME.findall(t)) for t in texts) > 500
    assert sum(len(SELECTOR.findall(t)) for t in texts) > 50
    assert RULES_FILE in scanned_files() and len(recorded()) > 50


def test_the_consumer_exports_exactly_the_contracts_families(tmp_path):
    """Names, types, HELP and label names of consumer/metrics.py and consumer/drift.py's
    collector (a drift report present, so its two families are written) are
    proto/contract.toml [consumer.metrics]; and every closed label set is present from the
    start with exactly the contract's values."""
    from consumer.metrics import ConsumerMetrics

    report = tmp_path / "drift.json"
    report.write_text('{"timestamp": 1.0, "artifact": "xgb-v2", "drifted_share": 0.1}')
    reg = CollectorRegistry()
    ConsumerMetrics(reg, report)
    got = {m.name: (m.type, m.documentation) for m in reg.collect()}
    consumer = contract()["consumer"]
    want = {
        m["name"].removesuffix("_total"): (m["type"], m["help"])
        for m in consumer["metrics"].values()
    }
    assert got == want
    for family, label, section in [
        ("volspike_consumer_dead_lettered", "reason", ("tick_reasons", "pipeline_reasons")),
        ("volspike_consumer_errors", "type", ("error_types",)),
        ("volspike_consumer_symbols_evicted", "why", ("evictions",)),
    ]:
        values = {s.labels[label] for m in reg.collect() if m.name == family for s in m.samples}
        assert values == {v for k in section for v in consumer[k]}, family


def test_the_consumer_dead_letters_an_oversized_tick_as_too_large():
    """The reason the consumer sends (header and label) for an oversized tick is the one the
    runbook and the dashboards name. Mutation (b): rename too_large in the contract and
    regenerate, and this fails."""
    from consumer.messages import MAX_MESSAGE_BYTES, BadTick, decode_tick

    with pytest.raises(BadTick) as exc:
        decode_tick(b" " * (MAX_MESSAGE_BYTES + 1), now_ms=1_700_000_000_000)
    assert exc.value.kind == "too_large"
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    assert f"--reason {exc.value.kind}" in runbook


def test_the_contract_names_each_family_once_and_the_rules_use_them():
    """Every family the rules file reads is a family of the contract, and each family of
    the contract is named once across servers and consumer."""
    c = tomllib.loads(gen_contract.CONTRACT.read_text())
    names = [m["name"] for m in (*c["metrics"].values(), *c["consumer"]["metrics"].values())]
    assert len(names) == len(set(names))
    exprs = yaml.safe_load(RULES_FILE.read_text())
    text = str(exprs)
    used = {n for n in NAME.findall(text) if ":" not in n and n not in recorded()}
    assert used and used <= defined_names(), used - defined_names()


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (
            ('name = "volspike_consumer_errors_total"', 'name = "volspike_consumer_errors"'),
            "ends in _total",
        ),
        (
            ('name = "volspike_consumer_symbols"', 'name = "volspike_serving"'),
            "named twice",
        ),
        (('symbol_flood = "', 'too_large = "'), "both a tick's and the pipeline's"),
        (('labels = ["why"]', 'labels = ["how"]'), "'how' is not documented"),
        (('buckets = "batch"', 'buckets = "batches"'), "'batches' are not defined"),
        (('ok = "ok"', 'ok = "fine"'), "[results] is ok and failed"),
        (('cap = "max_symbols', 'Cap = "max_symbols'), "not a lowercase name"),
        (('more_names = " and {more:d} more"', 'more_names = "{more!r}"'), "{x} or {x:d}"),
    ],
)
def test_the_generator_refuses_a_contract_that_names_something_twice_or_loosely(
    tmp_path, edit, complaint
):
    text = gen_contract.CONTRACT.read_text()
    assert edit[0] in text
    bad = tmp_path / "contract.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ValueError, match=re.escape(complaint)):
        gen_contract.load(bad)
