"""The Go server (server/native) is one small package main over internal packages, one per
concern, that import each other in one direction only (docs/server.md "Go server layout").

Mutations (each seen failing): import internal/predict in internal/registry/registry.go; put
`package main` back in a file of internal/telemetry; move metrics.go back to the module root.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from tests.conftest import ROOT

NATIVE = ROOT / "server" / "native"
MODULE = "volspike/server/native"
# package -> the packages of ours it may import; the order is the dependency order
ALLOWED = {
    "internal/contract": set(),
    "internal/config": set(),
    "internal/telemetry": {"internal/contract"},
    "internal/registry": {"internal/contract", "internal/config", "internal/telemetry"},
    "internal/rpc": {"internal/contract", "internal/telemetry"},
    "internal/predict": {
        "internal/contract",
        "internal/registry",
        "internal/rpc",
        "internal/telemetry",
    },
    "internal/kserve": {
        "internal/contract",
        "internal/config",
        "internal/predict",
        "internal/registry",
        "internal/rpc",
    },
}
MAIN_FILES = {"main.go", "app.go", "health.go"}  # wiring only; each concern has its package
# a declaration -> the package that owns it (it may not sit in package main again)
OWNERS = {
    r"^type ServiceError struct": "internal/contract",
    r"^type Settings struct": "internal/config",
    r"^func ReadModelConfig\(": "internal/config",
    r"^type Metrics struct": "internal/telemetry",
    r"^func NewTracerProvider\(": "internal/telemetry",
    r"^type LogLimiter struct": "internal/telemetry",
    r"^type Registry struct": "internal/registry",
    r"^type Model struct": "internal/registry",
    r"^func checkManifest\(": "internal/registry",
    r"^func checkELF\(": "internal/registry",
    r"^type Calibration struct": "internal/registry",
    r"^type Call struct": "internal/rpc",
    r"^type Wrapper struct": "internal/rpc",
    r"^func PredictorMethods\(": "internal/rpc",
    r"^func \(s \*Service\) Predict\(": "internal/predict",
    r"^func \(s \*Service\) ModelInfer\(": "internal/kserve",
}
IMPORT_BLOCK = re.compile(r"^import \((.*?)^\)", re.M | re.S)
IMPORT_LINE = re.compile(r'^import\s+(?:\w+\s+)?"([^"]+)"', re.M)
QUOTED = re.compile(r'"([^"]+)"')


def go_files(root: Path) -> dict[str, list[Path]]:
    """Package directory (relative to the module, "" for the root) -> its Go files; the
    protobuf stubs (gen/) are left out."""
    out: dict[str, list[Path]] = {}
    for p in sorted(root.rglob("*.go")):
        rel = p.parent.relative_to(root).as_posix()
        rel = "" if rel == "." else rel
        if rel.split("/")[0] != "gen":
            out.setdefault(rel, []).append(p)
    return out


def imports(text: str) -> set[str]:
    found = set(IMPORT_LINE.findall(text))
    for block in IMPORT_BLOCK.findall(text):
        found |= set(QUOTED.findall(block))
    return found


def layout_problems(root: Path = NATIVE) -> list[str]:
    problems = []
    packages = go_files(root)
    for pkg, files in packages.items():
        if pkg and pkg not in ALLOWED:
            problems.append(f"{pkg}: not a package of the layout {sorted(ALLOWED)}")
            continue
        want = pkg.rsplit("/", 1)[-1] if pkg else "main"
        for f in files:
            text = f.read_text()
            name = f"{pkg or '.'}/{f.name}"
            clause = re.search(r"^package (\w+)", text, re.M)
            if not clause or clause.group(1) != want:
                problems.append(f"{name}: package {clause and clause.group(1)}, want {want}")
            if not pkg and not f.name.endswith("_test.go") and f.name not in MAIN_FILES:
                problems.append(f"{name}: package main holds only {sorted(MAIN_FILES)}")
            ours = {i.removeprefix(MODULE + "/") for i in imports(text) if i.startswith(MODULE)}
            ours = {i for i in ours if i.split("/")[0] != "gen"}
            if pkg and not f.name.endswith("_test.go"):  # a test may build its fixtures
                for bad in sorted(ours - ALLOWED[pkg]):
                    problems.append(
                        f"{name}: imports {bad}; {pkg} may import {sorted(ALLOWED[pkg])}"
                    )
            for pattern, owner in OWNERS.items():
                if re.search(pattern, text, re.M) and pkg != owner:
                    problems.append(f"{name}: {pattern!r} belongs in {owner}")
    for pkg in ALLOWED:
        if pkg not in packages:
            problems.append(f"{pkg}: missing")
    for pattern, owner in OWNERS.items():
        if not any(re.search(pattern, f.read_text(), re.M) for f in packages.get(owner, [])):
            problems.append(f"{owner}: no {pattern!r}")
    return problems


def test_the_go_server_keeps_its_layout():
    assert layout_problems() == []


def test_the_layout_check_sees_a_broken_layout(tmp_path):
    """No vacuous pass: each mutation of the docstring is found in a copy of the module."""
    copy = tmp_path / "native"
    shutil.copytree(NATIVE, copy, ignore=shutil.ignore_patterns("volspike-server", "gen"))
    registry = copy / "internal" / "registry" / "registry.go"
    registry.write_text(
        registry.read_text().replace(
            "import (\n", f'import (\n\t_ "{MODULE}/internal/predict"\n', 1
        )
    )
    tracing = copy / "internal" / "telemetry" / "tracing.go"
    tracing.write_text(tracing.read_text().replace("package telemetry", "package main", 1))
    (copy / "internal" / "telemetry" / "metrics.go").rename(copy / "metrics.go")
    problems = "\n".join(layout_problems(copy))
    assert "internal/registry/registry.go: imports internal/predict" in problems, problems
    assert "internal/telemetry/tracing.go: package main, want telemetry" in problems, problems
    assert "./metrics.go: package main holds only" in problems, problems
    assert "./metrics.go: '^type Metrics struct' belongs in internal/telemetry" in problems
