"""The docs are runnable: every command in a shell code block of README.md and docs/*.md
names make targets, modules, flags and files that exist; every module's --help runs; the
README's grpcurl commands run as written against a started server. (The runbook's PromQL
runs against the live Prometheus in tests/pipeline/test_observability_live.py.)

Mutation: rename a make target the README uses (e.g. `rollback:`) and the first test fails."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from tests.conftest import NATIVE_SERVER, ROOT, ServerProcess

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)
SEPARATORS = {"&&", "&", ";", "|", "||"}
PATH = re.compile(
    r"^(docs|config|observability|compiled_models|tools|server|consumer|drift|loadtest|kafka|proto)/[\w./-]+$"
)
GENERATED = ("reports/", ".run/", "server/native/volspike-server")  # made by runs and builds


def shell_commands(text: str) -> list[str]:
    """Whole commands from the shell code blocks (continuations and quotes joined)."""
    out = []
    for lang, body in BLOCK.findall(text):
        if lang not in ("", "sh", "bash"):
            continue
        cur = ""
        for line in body.splitlines():
            cur = f"{cur}\n{line}" if cur else line
            if cur.rstrip().endswith("\\"):
                continue
            try:
                shlex.split(cur, comments=True)
            except ValueError:  # a quote still open: the command goes on
                continue
            if cur.strip():
                out.append(cur)
            cur = ""
    return out


def simple_commands(cmd: str) -> list[list[str]]:
    words = [w.strip("()") for w in shlex.split(cmd, comments=True)]
    parts, cur = [], []
    for w in words:
        ends = w.endswith(";") and w != ";"
        w = w.rstrip(";") if ends else w
        if w in SEPARATORS or w == "":
            if cur:
                parts.append(cur)
            cur = []
        else:
            cur.append(w)
            if ends:
                parts.append(cur)
                cur = []
    if cur:
        parts.append(cur)
    return parts


def all_commands() -> list[tuple[str, list[str]]]:
    out = []
    for doc in DOCS:
        for cmd in shell_commands(doc.read_text()):
            for words in simple_commands(cmd):
                out.append((doc.name, words))
    return out


@cache
def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([\w.-]+):", text, re.M))


@cache
def help_text(python: str, module: str) -> str:
    out = subprocess.run(
        [python, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"{module} --help: {out.stderr[-500:]}"
    return out.stdout


def test_docs_have_commands():
    assert len(all_commands()) >= 30


def test_every_make_target_and_variable_in_the_docs_exists():
    makefile = (ROOT / "Makefile").read_text()
    for doc, words in all_commands():
        if words[0] != "make":
            continue
        for w in words[1:]:
            if "=" in w:
                var = w.split("=", 1)[0]
                assert re.search(rf"\b{var}\b", makefile), f"{doc}: make variable {var}"
            elif not w.startswith("-"):
                assert w in make_targets(), f"{doc}: make target {w!r} does not exist"


@pytest.mark.parametrize(
    "venv",
    [".venv", pytest.param(".venv-drift", marks=pytest.mark.slow)],  # only `make test` builds it
)
def test_every_module_runs_help_and_knows_the_flags_used(venv):
    pythons = {".venv": sys.executable, ".venv-drift": str(ROOT / ".venv-drift" / "bin" / "python")}
    for doc, words in all_commands():
        if words[0] != f"{venv}/bin/python" or words[1:2] != ["-m"]:
            continue
        text = help_text(pythons[venv], words[2])
        for w in words[3:]:
            if w.startswith("--"):
                assert w.split("=")[0] in text, f"{doc}: {words[2]} has no flag {w}"


@pytest.mark.slow  # `make test` builds the binary; `make test-fast` does not
def test_the_native_server_help_runs():
    out = subprocess.run([str(NATIVE_SERVER), "--help"], capture_output=True, text=True, timeout=30)
    assert "-model-config" in out.stdout + out.stderr


def test_every_path_the_docs_name_exists():
    missing = []
    for doc in DOCS:
        for cmd in shell_commands(doc.read_text()):
            for words in simple_commands(cmd):
                for w in words:
                    w = w.split("=", 1)[-1].rstrip(".,:")
                    named = PATH.match(w) and not w.startswith(GENERATED) and "*" not in w
                    if named and not (ROOT / w).exists():
                        missing.append(f"{doc.name}: {w}")
    assert not missing, missing


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("docs-server")).start()
    yield srv
    srv.stop()


@pytest.mark.slow
def test_the_readme_grpcurl_commands_run_as_written(server):
    readme = shell_commands((ROOT / "README.md").read_text())
    cmds = [c for c in readme if c.startswith(".venv/bin/grpcurl")]
    assert len(cmds) == 3
    for cmd in cmds:
        cmd = cmd.replace("127.0.0.1:50051", server.address)
        out = subprocess.run(
            ["bash", "-c", cmd.split("  #")[0]], cwd=ROOT, capture_output=True, text=True,
            timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, f"{cmd}\n{out.stderr}"
        assert out.stdout.strip()
    assert Path(ROOT / ".venv" / "bin" / "grpcurl").exists()
