"""Both servers' contract code is generated: the errors, metric families and limits of
proto/contract.toml (server/contract_gen.py, server/native/internal/contract/contract_gen.go)
and the Go services' handler interfaces (server/native/internal/rpc/services_gen.go).

Mutations: edit a message in proto/contract.toml (or a generated file by hand) and
test_the_checked_in_files_are_current fails naming the command that fixes it; build a
ServiceError by hand in server/codec.py and test_no_server_builds_an_error_outside_the_catalogue
fails."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tools import gen_contract, gen_schema


def test_the_checked_in_files_are_current():
    done = subprocess.run(
        [sys.executable, "-m", "tools.gen_schema", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_a_changed_message_makes_the_generated_files_stale(tmp_path, monkeypatch):
    text = gen_contract.CONTRACT.read_text()
    changed = tmp_path / "contract.toml"
    changed.write_text(text.replace("set either rows or packed, not both", "rows xor packed"))
    real = gen_contract.load
    monkeypatch.setattr(gen_contract, "load", lambda path=changed: real(path))
    # not rendered here: our KServe stubs clash with tritonclient's copy in this process
    current = gen_schema.SERVICES_FILE.read_text()
    monkeypatch.setattr(gen_schema, "render_services", lambda: current)
    monkeypatch.setattr(sys, "argv", ["gen_schema", "--check"])
    with pytest.raises(SystemExit) as exc:
        gen_schema.main()
    want = f"stale generated file: server/contract_gen.py: run {gen_schema.COMMAND}"
    assert exc.value.code == want


def test_an_error_constructor_takes_its_placeholders_typed():
    from server import contract_gen as c

    err = c.too_many_rows(field="packed.float32_le", rows=101, max_rows=100)
    assert (err.kind, err.code.name) == ("ResourceExhausted", "RESOURCE_EXHAUSTED")
    assert err.message == "packed.float32_le: 101 rows exceed the limit of 100 per call"
    go = gen_contract.GO_FILE.read_text()
    assert "func ErrTooManyRows(field string, rows int, maxRows int) error {" in go
    assert '"%s: %d rows exceed the limit of %d per call", field, rows, maxRows)' in go
    with pytest.raises(ValueError):  # {rows:d} refuses a string
        c.too_many_rows(field="rows", rows="many", max_rows=100)  # type: ignore[arg-type]
    with pytest.raises(TypeError):  # keyword-only: a reworded message cannot swap arguments
        c.too_many_rows("rows", 1, 100)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (('kind = "NotFound"', 'kind = "Missing"'), "kind 'Missing' is not in [kinds]"),
        (("{field} is empty", "{field!r} is empty"), "must be {x} or {x:d}"),
        (('"volspike_rpc_requests_total"', '"volspike_rpc_requests"'), "ends in _total"),
        (('labels = ["result"]', 'labels = ["outcome"]'), "'outcome' is not documented"),
        (('buckets = "load"\n', ""), "only a histogram, has buckets"),
        (
            ('params = ["field", "size", "width"]', 'params = ["field", "width"]'),
            "each placeholder",
        ),
        (("{field} is empty", "{grpc} is empty"), "'grpc' is a reserved name"),
        (("{field} is empty", "{type} is empty"), "'type' is a reserved name"),
        (("[errors.empty]", "[errors.import]"), "'import' is a reserved name"),
    ],
)
def test_the_generator_refuses_an_inconsistent_contract(tmp_path, edit, complaint):
    text = gen_contract.CONTRACT.read_text()
    assert edit[0] in text
    bad = tmp_path / "contract.toml"
    bad.write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(ValueError, match=re.escape(complaint)):
        gen_contract.errors(gen_contract.load(bad))


def test_no_server_builds_an_error_outside_the_catalogue():
    """Every error either server answers comes from a generated constructor, and both
    servers use every one of them."""
    contract = gen_contract.load()
    py = {p.name: p.read_text() for p in (ROOT / "server").glob("*.py")}
    native = ROOT / "server" / "native"
    go = {
        str(p.relative_to(native)): p.read_text()
        for p in native.rglob("*.go")
        if not p.name.endswith("_test.go") and p.relative_to(native).parts[0] != "gen"
    }
    hand_built = [n for n, t in py.items() if "ServiceError(" in t and n != "contract_gen.py"]
    hand_built += [
        n
        for n, t in go.items()
        if "&ServiceError{" in t and n != "internal/contract/contract_gen.go"
    ]
    assert hand_built == ["errors.py"], hand_built  # the class itself
    py_code = "".join(t for n, t in py.items() if not n.endswith("_gen.py"))
    go_code = "".join(t for n, t in go.items() if not n.endswith("_gen.go"))
    for key, e in contract["errors"].items():
        if not e.get("native_only"):  # documented in the contract: grpcio answers it itself
            assert f"contract.{key}(" in py_code, f"the Python server never answers {key}"
        camel = "".join(p.capitalize() for p in key.split("_"))
        assert f"contract.Err{camel}(" in go_code, f"the native server never answers {key}"


def test_every_proto_method_has_a_go_handler_in_the_generated_interface():
    """services_gen.go lists every method of both services; app.go registers through it, so
    a method the Go Service lacks is a compile error (seen: renaming Service.ModelInfo makes
    `make native` fail with "missing method ModelInfo"). The method names are read from the
    .proto text: importing our KServe stubs here would clash with tritonclient's copy."""
    import re

    text = (ROOT / "server" / "native" / "internal" / "rpc" / "services_gen.go").read_text()
    for proto in ("proto/volatility/v1/predictor.proto", "proto/inference/grpc_predict_v2.proto"):
        methods = re.findall(r"^\s*rpc\s+(\w+)\s*\(", (ROOT / proto).read_text(), re.M)
        assert methods, proto
        for m in methods:
            assert f"\t{m}(context.Context, *Call, *" in text, m
            assert f'"{m}", newReq[' in text, m
    app = (ROOT / "server" / "native" / "app.go").read_text()
    assert "rpc.PredictorMethods(predictor)" in app and "rpc.KserveMethods(inference)" in app


def test_odd_characters_render_the_same_in_both_languages(tmp_path):
    """%, braces, quotes, backslashes and a non-BMP character: Python's constructor and the
    text Go's Sprintf (or literal) would produce are the same string."""
    import json

    odd = tmp_path / "contract.toml"
    odd.write_text(
        gen_contract.CONTRACT.read_text()
        + """
[errors.odd_plain]
kind = "Internal"
message = "100% {{sure}} 'q' \\"dq\\" back\\\\slash \U0001f600"

[errors.odd_args]
kind = "Internal"
message = "{n:d}% of {name} {{x}} 'q' \\\\"
params = ["name", "n"]
"""
    )
    contract = gen_contract.load(odd)
    namespace: dict = {}
    exec(gen_contract.render_py(contract), namespace)
    py_plain = namespace["odd_plain"]().message
    py_args = namespace["odd_args"](name="cats", n=7).message
    assert py_plain == "100% {sure} 'q' \"dq\" back\\slash \U0001f600"
    assert py_args == "7% of cats {x} 'q' \\"
    go = gen_contract.render_go(contract)
    plain = re.search(r'func ErrOddPlain\(\) error \{\n.*Msg: (".*")\}', go)
    args = re.search(
        r"func ErrOddArgs\(name string, n int\) error \{\n.*Sprintf\((\".*\"), n, name\)", go
    )
    assert plain and args, go[-600:]
    assert json.loads(plain.group(1)) == py_plain  # Go and JSON string literals agree here
    assert json.loads(args.group(1)) % (7, "cats") == py_args  # %d %s %% as Sprintf reads them


def test_the_python_server_exports_exactly_the_contracts_families():
    """Names, types, HELP and label names come from proto/contract.toml (the native server
    is held to the same by tests/server/test_differential.py and metrics_test.go).
    Mutation: make ServerMetrics build a family as a Gauge where the contract says counter."""
    from prometheus_client import CollectorRegistry

    from server import contract_gen as c
    from server.metrics import ServerMetrics

    reg = CollectorRegistry()
    ServerMetrics(reg)
    got = {m.name: (m.type, m.documentation) for m in reg.collect()}
    want = {s.name.removesuffix("_total"): (s.type, s.help) for s in c.METRICS}
    assert got == want
    with pytest.raises(TypeError, match=r"is a counter in proto/contract\.toml, not a gauge"):
        from server import metrics

        metrics._gauge(c.RPC_REQUESTS, CollectorRegistry())
