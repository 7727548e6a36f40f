"""Real Apache Kafka (tools/kafka_broker.py) and real server/consumer processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from confluent_kafka import Consumer, TopicPartition

from compiled_models import runtime
from market.features import FeatureState
from tests.conftest import _STARTED, ROOT, ServerProcess, artifact_dir, free_port
from tools import kafka_broker
from tools.kafka_io import Topics, read_topic, read_until


@pytest.fixture(scope="session")
def kafka(tmp_path_factory):
    data = tmp_path_factory.mktemp("kafka")
    port = free_port()
    kafka_broker.up(port, free_port(), data, {})
    yield f"127.0.0.1:{port}"
    kafka_broker.down(data)


@pytest.fixture(scope="module")
def grpc_server(tmp_path_factory):
    srv = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield srv
    srv.stop()


@dataclass
class ConsumerProcess:
    kafka: str
    server: str
    topics: Topics
    workdir: Path
    metrics_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    name: str = "consumer"
    extra_env: dict = field(default_factory=dict)

    def start(self) -> ConsumerProcess:
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "VOLSPIKE_CONSUMER_TICKS_TOPIC": self.topics.ticks,
            "VOLSPIKE_CONSUMER_PREDICTIONS_TOPIC": self.topics.predictions,
            "VOLSPIKE_CONSUMER_DLQ_TOPIC": self.topics.dlq,
            "VOLSPIKE_CONSUMER_GROUP_ID": self.topics.group,
            "VOLSPIKE_CONSUMER_RETRY_MAX_BACKOFF_S": "0.5",
            "VOLSPIKE_CONSUMER_DEADLINE_S": "1.0",
            "VOLSPIKE_CONSUMER_LIVE_SAMPLE_DIR": str(self.workdir / "live-sample"),
            "VOLSPIKE_CONSUMER_DRIFT_REPORT_METRICS": str(self.workdir / "drift-metrics.json"),
            **self.extra_env,
        }
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = (self.workdir / f"{self.name}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "consumer",
                "--bootstrap",
                self.kafka,
                "--server",
                self.server,
                "--metrics-port",
                str(self.metrics_port),
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        _STARTED.append(self.proc)
        return self

    @property
    def log(self) -> str:
        return (self.workdir / f"{self.name}.log").read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def metric(self, name: str) -> float:
        import urllib.request

        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as r:
            text = r.read().decode()
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and not line.startswith("#"):
                total += float(line.rsplit(" ", 1)[1])
        return total


def replay(kafka: str, topic: str, *args: str) -> int:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "tools.replay",
            "--bootstrap",
            kafka,
            "--topic",
            topic,
            "--quiet",
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    done = next(line for line in out.stdout.splitlines() if line.startswith("replayed "))
    return int(done.split()[1].replace(",", ""))


def predictions_covering(
    kafka: str, topic: str, want: set, timeout: float = 90.0
) -> dict[tuple[int, int], list[dict]]:
    """Read ``topic`` until every (partition, offset) in ``want`` has a prediction
    (duplicates from at-least-once delivery don't count twice) or time runs out."""
    by: dict[tuple[int, int], list[dict]] = {}
    read_until(kafka, topic, lambda: want <= by.keys(), lambda m: _add(by, m), timeout)
    return by


def predictions_by_offset(msgs) -> dict[tuple[int, int], list[dict]]:
    by: dict[tuple[int, int], list[dict]] = {}
    for m in msgs:
        _add(by, m)
    return by


def _add(by: dict, m) -> None:
    d = json.loads(m.value())
    by.setdefault((d["source_partition"], d["source_offset"]), []).append(d)


def expected_probabilities(
    kafka: str, topic: str, count: int, artifact: str = "xgb-v2"
) -> dict[tuple[int, int], float | None]:
    """Independent reference: read the input topic back, compute features per symbol in
    partition order with market.features, score with the compiled model directly. None:
    the tick's symbol is still warming up (no probability is due)."""
    from consumer.messages import BadTick, decode_tick

    msgs = sorted(read_topic(kafka, topic, count), key=lambda m: (m.partition(), m.offset()))
    states: dict[tuple[int, str], FeatureState] = {}
    want: dict[tuple[int, int], float | None] = {}
    keys, rows = [], []
    for m in msgs:
        try:
            t = decode_tick(m.value(), int(time.time() * 1000))
        except BadTick:
            continue
        st = states.setdefault((m.partition(), t.symbol), FeatureState())
        row = st.update(t.event_time_ms, t.price, t.size, t.bid, t.ask)
        if st.ready:
            rows.append(row)
            keys.append((m.partition(), m.offset()))
        else:
            want[(m.partition(), m.offset())] = None
    if rows:
        probs = runtime.load(artifact_dir(artifact)).predict(np.array(rows, np.float32))
        want.update(zip(keys, probs.tolist(), strict=True))
    return want


def assert_answer(d: dict, want: float | None, atol: float = 1e-6) -> None:
    """A prediction record equals the reference: the probability, or warming up."""
    if want is None:
        assert d["warming_up"] is True and d["probability"] is None, d
    else:
        assert d["warming_up"] is False, d
        assert d["probability"] == pytest.approx(want, abs=atol), d


def end_offsets(kafka: str, topic: str, group: str, partitions: int) -> tuple[list, list]:
    c = Consumer({"bootstrap.servers": kafka, "group.id": group, "enable.auto.commit": False})
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        committed = [tp.offset for tp in c.committed(tps, timeout=10)]
        high = [c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
    finally:
        c.close()
    return committed, high
