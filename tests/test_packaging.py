"""One installable package: pyproject.toml names the direct dependencies, the requirements
files pin every install (runtime, dev, bench), and the two agree.

Mutation: bump a lower bound in pyproject.toml (say numpy>=2.5) without re-pinning, or pin a
package in two files at two versions, and these fail."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

import pytest

from tests.conftest import ROOT

PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
FILES = {
    "runtime": ("requirements.txt",),
    "dev": ("requirements.txt", "requirements-dev.txt"),
    "bench": ("requirements.txt", "requirements-bench.txt"),
}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(*files: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for f in files:
        for line in (ROOT / f).read_text().splitlines():
            if line and not line.startswith(("#", "-r")):
                name, version = line.split("==")
                out[norm(name)] = version
    return out


def direct(group: str) -> list[tuple[str, str]]:
    reqs = (
        PROJECT["dependencies"] if group == "runtime" else PROJECT["optional-dependencies"][group]
    )
    out = []
    for r in reqs:
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:\[[\w,]+\])?>=([\w.]+)", r)
        assert m, f"{r}: a direct dependency is name>=version"
        out.append((norm(m.group(1)), m.group(2)))
    return out


@pytest.mark.parametrize("group", list(FILES))
def test_every_direct_dependency_is_pinned_at_its_lower_bound(group):
    pinned = pins(*FILES[group])
    wrong = {n: (v, pinned.get(n)) for n, v in direct(group) if pinned.get(n) != v}
    assert not wrong, f"{group}: pyproject bound vs pin: {wrong}"


def test_no_package_is_pinned_twice():
    seen: dict[str, str] = {}
    for f in ("requirements.txt", "requirements-dev.txt", "requirements-bench.txt"):
        for name, version in pins(f).items():
            assert seen.setdefault(name, version) == version, (f, name, version, seen[name])
    extra = set(pins("requirements-dev.txt")) & set(pins("requirements.txt"))
    assert not extra, f"pinned in runtime and again in dev: {extra}"


def test_the_venv_has_the_package_and_its_commands():
    """`make venv` installs the project itself (editable): its metadata is pyproject's."""
    dist = importlib.metadata.distribution("volspike")
    assert dist.version == PROJECT["version"]
    scripts = {e.name for e in dist.entry_points if e.group == "console_scripts"}
    assert scripts == set(PROJECT["scripts"])
    requires = {norm(re.split(r"[\[>=;]", r)[0]) for r in dist.requires or [] if "extra" not in r}
    assert requires == {n for n, _ in direct("runtime")}
