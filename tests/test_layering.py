"""The consumer and the server share telemetry helpers, not each other's code (mutation:
import server.metrics in consumer/metrics.py again and this fails)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_the_consumer_does_not_import_the_server_package():
    probe = (
        "import consumer.__main__, consumer.pipeline, sys; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'server'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
