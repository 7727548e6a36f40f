"""History sent to warm symbols (``tools/replay.py --history-seconds --warm-group``, as ``make
demo`` does) is marked backfill: answered and published like any tick, kept out of the
freshness SLI's histogram and counted apart; the live ticks after it are measured. Real
broker, server, consumer and replay tool.

Before: every history tick older than 30 s counted as a stale answer, so the demo burned
its freshness budget at ~80x (with the old consumer the freshness assertion fails: ~29,000
of ~32,700 answers observed past 30 s)."""

from __future__ import annotations

import time

from market.synthetic import SyntheticTicks, universe
from tests.pipeline.conftest import ConsumerProcess, Topics, predictions_covering, replay
from tools.kafka_io import read_topic

LAG = "volspike_consumer_end_to_end_lag_seconds"
RATE, SYMBOLS, HISTORY_S, SEED = 100.0, 4, 310.0, 5
AFTER_S = 30.0  # of ticks after the history: first the catch-up (a few s), then live


def history_ticks() -> int:
    """Ticks the generator makes in its first HISTORY_S (chunk-invariant, seeded): the
    back-dated part the replay sends at once."""
    gen = SyntheticTicks(symbols=universe(SYMBOLS), seed=SEED, rate_per_s=RATE, start_ms=0)
    t = gen.frame(int(RATE * 2 * HISTORY_S))["event_time_ms"].to_numpy()
    return int((t < HISTORY_S * 1000).sum())


def test_backfill_is_answered_but_kept_out_of_freshness(kafka, grpc_server, tmp_path):
    topics = Topics.fresh(kafka)
    n_hist = history_ticks()
    count = n_hist + int(RATE * AFTER_S)
    c = ConsumerProcess(kafka, grpc_server.address, topics, tmp_path).start()
    try:
        start_ms = time.time() * 1000
        n = replay(
            kafka,
            topics.ticks,
            "--source",
            "synthetic",
            "--rate",
            str(RATE),
            "--symbols",
            str(SYMBOLS),
            "--seed",
            str(SEED),
            "--count",
            str(count),
            "--history-seconds",
            str(HISTORY_S),
            "--warm-group",
            topics.group,
        )
        assert n == count
        ticks = read_topic(kafka, topics.ticks, n)
        marked = {
            (m.partition(), m.offset()): m.timestamp()[1]
            for m in ticks
            if ("backfill", b"1") in (m.headers() or ())
        }
        first = sorted(ticks, key=lambda m: m.timestamp()[1])[:n_hist]
        assert {(m.partition(), m.offset()) for m in first} <= marked.keys()  # the history
        live_ev = [m.timestamp()[1] for m in ticks if (m.partition(), m.offset()) not in marked]
        assert max(marked.values()) <= min(live_ev)  # then what fell due meanwhile, then live
        assert n - len(marked) >= RATE * 2, "no live part"
        # every tick answered and published, backfill included: warming up, then scored
        got = predictions_covering(
            kafka, topics.predictions, {(m.partition(), m.offset()) for m in ticks}
        )
        assert len(got) == n
        scored = [got[k][0] for k in marked if not got[k][0]["warming_up"]]
        assert scored, "no history tick past the 300 s warm-up: nothing scored"
        assert all(not got[k][0]["warming_up"] for k in got if k not in marked)
        # the consumer read every history tick after the replay began: those older than
        # that by backfill_min_age_s (20 s) were backfill; the last 20 s may not be
        surely_old = sum(ev < start_ms - 20_000 for ev in marked.values())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # the counters follow the deliveries
            backfill = c.metric("volspike_consumer_backfill_predictions_total")
            observed = c.metric(f"{LAG}_count")
            if backfill + observed >= n:
                break
            time.sleep(0.2)
        assert backfill + observed == n  # each answer is measured or counted as backfill
        fresh = c.metric(f'{LAG}_bucket{{le="30.0"}}')
        assert fresh == observed, f"{observed - fresh:.0f} answers observed past 30 s"
        assert surely_old <= backfill <= len(marked)
        assert observed >= n - len(marked)  # every live answer is measured
    finally:
        c.stop()
