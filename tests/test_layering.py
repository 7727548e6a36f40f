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


STAGES = {  # stage -> the consumer modules it may import (consumer/pipeline.py wires them)
    "batcher": set(),
    "offsets": {"metrics"},
    "outputs": {"batcher", "config", "messages", "metrics", "offsets"},
    "intake": {"batcher", "config", "messages", "metrics", "offsets", "outputs", "states"},
    "predict_client": {"batcher", "config", "metrics", "outputs"},
    "model_info": {"batcher", "config", "metrics", "outputs"},
    "drift_watch": {"batcher", "drift", "metrics", "model_info"},
}


def test_the_consumer_stages_import_only_the_stages_before_them():
    """One job each: no stage reaches back into the loop or into a later stage, and the
    Predict client and the schema check know nothing of Kafka (mutation: import
    consumer.pipeline, or confluent_kafka, in consumer/predict_client.py and this fails)."""
    import ast

    for stage, allowed in STAGES.items():
        tree = ast.parse((ROOT / "consumer" / f"{stage}.py").read_text())
        imported = {
            n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
        } | {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mine = {m.split(".", 1)[1] for m in imported if m.startswith("consumer.")}
        assert mine <= allowed, f"consumer/{stage}.py imports {sorted(mine - allowed)}"
        if stage in ("predict_client", "model_info"):
            assert not any(m.startswith("confluent_kafka") for m in imported), stage
