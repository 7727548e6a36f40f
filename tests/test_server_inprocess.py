"""The in-process Python-server checks (tests/inprocess/server_inprocess_check.py) in a
process of their own: they import our KServe stubs, which clash with tritonclient's copy of
the same protos once another test module has loaded it ("duplicate symbol
'inference.ServerLiveRequest'" at collection in a whole run)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_in_process_server_checks_pass_in_their_own_process():
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/inprocess/server_inprocess_check.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert " passed" in out.stdout and "failed" not in out.stdout, out.stdout[-2000:]
