"""The crypto-stream artifact, end to end: the generated stream through Kafka, the
consumer and the native server. Its spike share must follow the generator's regime, and
every symbol's first 300 s must be answered "warming up", never with a probability."""

from __future__ import annotations

import json

import numpy as np

from market.features import WARMUP_MS
from market.synthetic import SyntheticTicks, universe
from tests.conftest import ServerProcess
from tests.pipeline.conftest import ConsumerProcess, Topics, read_topic, replay

SEED, SYMBOLS, TICKS = 31, 4, 250_000  # ~70 min of event time, ~18 calm/stressed cycles
MIN_RATIO = 3.0  # flagged share in stressed stretches >= 3x the calm share ...
MIN_GAP = 0.04  # ... and at least 4 points above it (measured: 0.068 vs 0.010)


def test_spike_share_follows_the_regime_and_cold_symbols_warm_up(kafka, tmp_path):
    frame = SyntheticTicks(symbols=universe(SYMBOLS), seed=SEED).frame(TICKS)
    times = frame["event_time_ms"].to_numpy()
    stressed = frame["stressed"].to_numpy()
    first_tick = frame.groupby("symbol")["event_time_ms"].min().to_dict()

    srv = ServerProcess(tmp_path / "server", artifact="crypto-v1", servable=()).start()
    topics = Topics.fresh(kafka)
    c = ConsumerProcess(kafka, srv.address, topics, tmp_path).start()
    try:
        args = ["--source", "synthetic", "--count", str(TICKS), "--keep-time"]
        n = replay(kafka, topics.ticks, *args, "--seed", str(SEED), "--symbols", str(SYMBOLS))
        assert n == TICKS
        records = [json.loads(m.value()) for m in read_topic(kafka, topics.predictions, n)]
    finally:
        c.stop()
        srv.stop()
    assert len({(r["source_partition"], r["source_offset"]) for r in records}) == n

    t = np.array([r["event_time_ms"] for r in records])
    age = t - np.array([first_tick[r["symbol"]] for r in records])
    warming = np.array([r["warming_up"] for r in records])
    # cold symbols: warming up exactly until 300 s of history, then always scored
    np.testing.assert_array_equal(warming, age < WARMUP_MS)
    assert all(r["probability"] is None and r["label"] is None for r in records if r["warming_up"])
    assert all(r["artifact"] == "crypto-v1" for r in records if not r["warming_up"])

    scored = [r for r in records if not r["warming_up"]]
    ts = np.array([r["event_time_ms"] for r in scored])
    regime = stressed[np.searchsorted(times, ts, side="right") - 1]  # one regime for all
    flagged = np.array([r["label"] for r in scored])
    in_stress, in_calm = flagged[regime].mean(), flagged[~regime].mean()
    print(
        f"flagged share: stressed {in_stress:.3f} ({regime.sum():,} ticks), "
        f"calm {in_calm:.3f} ({(~regime).sum():,} ticks)"
    )
    assert in_stress >= MIN_RATIO * in_calm and in_stress - in_calm >= MIN_GAP
