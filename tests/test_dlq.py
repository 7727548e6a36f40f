"""tools/dlq.py show --reason keeps the dead letters whose structured ``reason`` header (the
metric's label, proto/contract.toml) is that kind; the free-text ``error`` header is never
matched. No Kafka here (tests/pipeline/test_hostile.py runs the real tool against a broker).

Mutation (seen failing): filter on ``h.get("error")`` again (the issue's bug: the runbook's
``--reason too_large`` showed nothing) and test_reason_filters_the_reason_header fails."""

from __future__ import annotations

import subprocess
import sys

from telemetry import names_gen as contract
from tests.conftest import ROOT
from tools.dlq import describe

TOO_LARGE = [
    ("error", b"message is 20000 bytes; a tick is at most 16384"),
    ("reason", contract.REASON_TOO_LARGE.encode()),
    ("source_partition", b"0"),
    ("source_offset", b"7"),
    ("truncated", b"true"),
]


def test_reason_filters_the_reason_header():
    line = describe(TOO_LARGE, b"x" * 100, "too_large")
    assert line == (
        "0/7: [too_large] message is 20000 bytes; a tick is at most 16384 [truncated] | "
        f"{'x' * 80!r}"
    )
    assert describe(TOO_LARGE, b"", None) == line.replace(repr("x" * 80), "''")
    assert describe(TOO_LARGE, b"", contract.REASON_INVALID_JSON) is None
    assert describe(TOO_LARGE, b"", "message") is None  # words of the error text match nothing


def test_the_help_lists_the_contracts_reasons():
    """--reason's help lists every kind of the contract (a kind outside it is named on
    stderr when the tool runs: it would silently show nothing)."""
    out = subprocess.run(
        [sys.executable, "-m", "tools.dlq", "show", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 0 and "one of too_large, null" in " ".join(out.stdout.split())
