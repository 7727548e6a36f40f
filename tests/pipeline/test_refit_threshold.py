"""`make refit-threshold` against a real Kafka topic and a real server: the threshold is
refitted on exactly the served artifact's scores stamped within the window (warm-up records,
other artifacts, older records and foreign bytes left out), written into the model config,
and served without a restart; too few rows leave the config untouched."""

from __future__ import annotations

import subprocess
import sys
import time

import grpc
import numpy as np
import orjson
from confluent_kafka import Producer

from compiled_models.evaluate import threshold_for_rate
from config.model_config import read_model_config
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ROOT, ServerProcess
from tools.kafka_io import Topics

WINDOW_S = 3600


def record(prob: float | None, artifact: str | None) -> bytes:
    return orjson.dumps(
        {"symbol": "BTC-USD", "warming_up": prob is None, "probability": prob, "artifact": artifact}
    )


def fill(kafka: str, topic: str) -> np.ndarray:
    """Produce a mixed window; the xgb-v2 scores the refit must see."""
    rng = np.random.default_rng(5)
    now_ms = int(time.time() * 1000)
    scores = rng.beta(1.2, 9.0, 12_000).astype(np.float32)
    p = Producer({"bootstrap.servers": kafka, "linger.ms": 20})
    old_ms = now_ms - 2 * WINDOW_S * 1000
    for _ in range(3_000):  # older than the window: high scores that would move it
        p.produce(topic, record(0.99, "xgb-v2"), timestamp=old_ms)
    for i, s in enumerate(scores):
        p.produce(topic, record(float(s), "xgb-v2"), timestamp=now_ms - 1_000 + i % 500)
        if i % 4 == 0:
            # stamped before the window but written after its start: past the offset
            # offsets_for_times gives, so only the timestamp can leave it out
            p.produce(topic, record(0.99, "xgb-v2"), timestamp=old_ms)
            p.produce(topic, record(None, None))  # warming up
            p.produce(topic, record(0.999, "xgb-v1"))  # another artifact
        if i % 1_000 == 0:
            p.produce(topic, b"\xff not json")
            p.produce(topic, orjson.dumps(["a", "list"]))
            p.produce(topic, record(1.5, "xgb-v2"))  # out of range: not a probability
        p.poll(0)
    assert p.flush(30) == 0
    return scores


def refit(kafka: str, topic: str, config, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "server.refit_threshold",
            "--bootstrap",
            kafka,
            "--topic",
            topic,
            "--model-config",
            str(config),
            "--window-s",
            str(WINDOW_S),
            *extra,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_the_refit_uses_the_windows_scores_and_the_server_serves_it(kafka, tmp_path):
    topic = Topics.fresh(kafka).predictions
    scores = fill(kafka, topic)
    want = float(np.float32(threshold_for_rate(scores, 0.05)))
    assert 0.04 < np.mean(scores >= np.float32(want)) <= 0.05
    srv = ServerProcess(tmp_path / "srv", artifact="xgb-v2", impl="python").start()
    try:
        before = srv.model_config.read_bytes()
        out = refit(kafka, topic, srv.model_config, "--min-rows", "12001")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "12,000 scored rows of xgb-v2" in out.stdout
        assert "refused: fewer than 12,001 scored rows" in out.stderr
        assert srv.model_config.read_bytes() == before  # untouched

        out = refit(kafka, topic, srv.model_config, "--min-rows", "12000", "--address", srv.address)
        assert out.returncode == 0, out.stdout + out.stderr
        cfg = read_model_config(srv.model_config)
        assert dict(cfg.decision_threshold) == {"xgb-v2": want}
        assert (cfg.artifact, cfg.servable) == ("xgb-v2", ("xgb-v1", "baseline-rv60"))
        with grpc.insecure_channel(srv.address) as ch:
            info = pb_grpc.PredictorStub(ch).ModelInfo(pb.ModelInfoRequest(), timeout=5)
        assert info.decision_threshold == np.float32(want)
        assert srv.proc.poll() is None  # no restart
    finally:
        assert srv.stop() == 0
