"""tools/replay.py --source synthetic --rate N keeps the generator's own timing: the
generator runs at rate_per_s=N from now minus --history-seconds, each tick is sent when the
wall clock reaches its event time (the back-dated ones at once), event times unchanged and
used as the Kafka timestamps. A stand-in producer records what would be sent (no Kafka)."""

from __future__ import annotations

import argparse
import time

import numpy as np
import orjson

from market.synthetic import SyntheticTicks, universe
from tools import replay as rp


class FakeProducer:
    def __init__(self, config: dict) -> None:
        self.sent: list[tuple[float, int, dict]] = []

    def produce(self, topic, value, key, timestamp) -> None:
        self.sent.append((time.time() * 1000, timestamp, orjson.loads(value)))

    def poll(self, timeout=0) -> int:
        return 0

    def flush(self, timeout=0) -> int:
        return 0


def run(monkeypatch, **kw) -> FakeProducer:
    made: list[FakeProducer] = []

    def factory(config):
        made.append(FakeProducer(config))
        return made[-1]

    monkeypatch.setattr(rp, "Producer", factory)
    args = dict(
        bootstrap="x", topic="ticks", source="synthetic", count=3_000, speed=0.0, rate=1_000.0,
        seed=3, symbols=0, keep_time=False, history_seconds=2.0, quiet=True,
    )  # fmt: skip
    args.update(kw)
    assert rp.replay(argparse.Namespace(**args)) == args["count"]
    return made[0]


def test_synthetic_rate_keeps_the_generators_event_times(monkeypatch):
    t0 = time.time() * 1000
    prod = run(monkeypatch)
    wall = np.array([s[0] for s in prod.sent])
    ts = np.array([s[1] for s in prod.sent])
    ev = np.array([s[2]["event_time_ms"] for s in prod.sent])
    assert (ts == ev).all()  # the Kafka timestamp is the event time
    gen = SyntheticTicks(symbols=universe(0), seed=3, rate_per_s=1_000.0, start_ms=0)
    ref = gen.frame(3_000)["event_time_ms"].to_numpy()
    # same spacing as the generator's own (only start_ms differs), never re-stamped
    offsets = np.unique(ts - ref)
    assert offsets.size == 1
    start = offsets[0]
    assert t0 - 2_000 - 5 <= start <= t0 - 2_000 + 50  # --history-seconds 2 before now
    # the back-dated ticks went at once; later ones not before their event time
    past = ts < t0
    assert past.sum() > 1_000
    assert (wall[~past] >= ts[~past] - 3).all()
    assert wall[-1] - t0 >= ts[-1] - t0 - 3 > 0
