"""``make replay``: publish ticks to the ticks topic, keyed by symbol.

    --source real       the 500,000 real E-mini trades (in order)
    --source synthetic  the seeded generator (--count ticks, any length)
    --speed 1           real pace; 10 = ten times faster; 0 = as fast as possible
    --rate N            alternatively, ticks per second (see below)

--source synthetic --rate N keeps the generator's own timing: the generator is built with
rate_per_s=N (N is the mean tick rate across all symbols in the CALM regime; stressed
regimes send stress_rate times faster, 2x by default) and start_ms = now (wall clock) minus
--history-seconds (default 0). Each tick is sent when wall time reaches its event time, and
ticks already in the past (the --history-seconds of back-dated history) are sent at once
first. Event times are the generator's, unchanged: never re-stamped.

Otherwise (--source real, or synthetic without --rate) event times are re-based so the first
tick is "now" and later ones keep their spacing divided by the speed (with --rate or
--speed 0 a tick's event time is when it is sent; real --rate with --history-seconds first
sends that many seconds x N back-dated ticks at once), so end-to-end lag measured downstream
is real. --keep-time sends original event times.
The Kafka message timestamp is the event time (the consumer's warm-up relies on it).
The --history-seconds ticks carry the Kafka header ``backfill: 1``: the consumer answers
them as any other, but keeps those already backfill_min_age_s (20 s) old when read out of
the freshness SLI and counts them apart (volspike_consumer_backfill_predictions_total).

--warm-group G (synthetic --rate --history-seconds, what ``make demo`` runs): the live ticks
wait until consumer group G has committed the history. The ticks that fell due meanwhile are
history too (sent at once, marked), and so on until G is less than 2 s behind, so no live
tick queues behind the warm-up and none is re-timed (each symbol's stream stays unbroken).
A line ``live: ...`` is printed when the live part begins.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from confluent_kafka import Consumer, Producer, TopicPartition
from tqdm import tqdm

from consumer.messages import BACKFILL_HEADER, encode_row, now_ms_wall
from market import realdata
from market.synthetic import SyntheticTicks, universe
from market.ticks import TICK_COLUMNS

CHUNK = 20_000
DELIVERY_TIMEOUT_S = 120.0
"""How long a tick may wait for Kafka's acknowledgement (librdkafka message.timeout.ms);
the final flush waits a little longer, so every tick ends delivered or reported."""
CAUGHT_UP_MS = 2_000
"""--warm-group: the warm-up ends once the group is this close behind the clock."""


def frames(
    source: str,
    count: int | None,
    seed: int,
    symbols: int,
    rate: float | None = None,
    start_ms: int | None = None,
    regimes: dict[str, float] | None = None,
) -> Iterator[pd.DataFrame]:
    if source == "real":
        df = realdata.load()
        yield df if count is None else df.iloc[:count]
        return
    timing: dict[str, Any] = {} if rate is None else {"rate_per_s": rate}
    if start_ms is not None:
        timing["start_ms"] = start_ms
    timing.update(regimes or {})
    gen = SyntheticTicks(symbols=universe(symbols), seed=seed, **timing)
    yield from gen.frames(count or 100_000, chunk=CHUNK)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--topic", default="ticks")
    p.add_argument("--source", choices=["real", "synthetic"], default="synthetic")
    p.add_argument("--count", type=int, help="ticks to send (default: all real / 100,000)")
    p.add_argument("--speed", type=float, default=0.0)
    p.add_argument("--rate", type=float, help="ticks per second (overrides --speed)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--symbols",
        type=int,
        default=0,
        help="synthetic: number of symbols (default 4; more keeps each one's "
        "trade rate realistic at high --rate)",
    )
    p.add_argument("--keep-time", action="store_true")
    p.add_argument(
        "--history-seconds",
        type=float,
        default=0.0,
        help="with --rate: first send this many seconds of back-dated history at once "
        "(synthetic: the generator starts that long before now), marked backfill "
        "(Kafka header backfill: 1)",
    )
    p.add_argument(
        "--warm-group",
        help="synthetic --rate --history-seconds: hold the live ticks until this consumer "
        "group has committed the history (what fell due meanwhile is history too)",
    )
    p.add_argument(
        "--warm-timeout",
        type=float,
        default=600.0,
        help="--warm-group: go live anyway after waiting this many seconds in all",
    )
    p.add_argument("--calm-s", type=float, help="synthetic: mean calm run, seconds")
    p.add_argument("--stressed-s", type=float, help="synthetic: mean stressed run, seconds")
    p.add_argument(
        "--regimes",
        type=Path,
        help="synthetic: append 'event_time_ms calm|stressed' here at every regime change",
    )
    p.add_argument(
        "--delivery-timeout",
        type=delivery_timeout,
        default=DELIVERY_TIMEOUT_S,
        help="seconds a tick may wait for Kafka's acknowledgement; any tick refused or not "
        "acknowledged in time makes replay exit 1 naming how many",
    )
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    try:
        sent = replay(a)
    except NotDelivered as exc:
        sys.exit(f"replay: {exc}")
    print(f"replayed {sent:,} ticks to {a.topic}")


class NotDelivered(RuntimeError):
    """Some ticks did not reach Kafka: the message says how many and the first reason."""


class Deliveries:
    """Counts the ticks Kafka refused or never acknowledged (the producer's on_delivery)."""

    def __init__(self) -> None:
        self.failed = 0
        self.first_error: str | None = None

    def __call__(self, err, _msg) -> None:
        if err is not None:
            self.failed += 1
            if self.first_error is None:
                self.first_error = str(err)

    def check(self, sent: int, queued: int) -> None:
        if self.failed or queued:
            why = (
                [f"{self.failed:,} failed, first error: {self.first_error}"] if self.failed else []
            )
            if queued:
                why.append(f"{queued:,} still unacknowledged after the final flush")
            raise NotDelivered(
                f"{self.failed + queued:,} of {sent:,} ticks not delivered ({'; '.join(why)})"
            )


def delivery_timeout(text: str) -> float:
    """--delivery-timeout: seconds, 0.01 (above linger.ms) to 2,147,483 (librdkafka's
    message.timeout.ms maximum); 0 would mean 'never' to librdkafka, so it is refused too."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0.01 <= v <= 2_147_483:  # also refuses nan and inf
        raise argparse.ArgumentTypeError(f"{text!r} is out of range: from 0.01 to 2147483 s")
    return v


def replay(a: argparse.Namespace) -> int:
    """Sends the ticks; returns how many, or raises NotDelivered when any of them did not
    reach Kafka (refused, or not acknowledged within the delivery timeout)."""
    timeout_s = getattr(a, "delivery_timeout", DELIVERY_TIMEOUT_S)
    deliveries = Deliveries()
    producer = Producer(
        {
            "bootstrap.servers": a.bootstrap,
            "message.timeout.ms": int(timeout_s * 1000),
            "on_delivery": deliveries,
            "acks": "all",  # every in-sync replica has it (2 of 3 at least on a cluster)
            "enable.idempotence": True,  # broker failover retries add no duplicate tick
            "linger.ms": 5,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    bar = tqdm(total=a.count, unit="tick", disable=a.quiet, mininterval=0.5)
    sent = 0
    t_wall0 = time.monotonic()
    base = now_ms_wall()
    t_event0 = None
    # synthetic --rate: the generator's own event times, starting --history-seconds ago;
    # each tick is due when the wall clock reaches its event time (the past ones at once)
    paced = a.source == "synthetic" and bool(a.rate)
    hist_ms = int(a.history_seconds * 1000) if a.rate and a.history_seconds else 0
    # real --history-seconds: the first ticks carry event times in the recent past, sent at
    # once, so the stream starts with features that already have their 60 s of history.
    n_hist = int(a.rate * a.history_seconds) if hist_ms and not paced else 0
    hist_start = base - hist_ms
    pairs = (("calm_s", getattr(a, "calm_s", None)), ("stressed_s", getattr(a, "stressed_s", None)))
    regimes = {k: v for k, v in pairs if v is not None}
    regime_log: Path | None = getattr(a, "regimes", None)
    source = frames(
        a.source,
        a.count,
        a.seed,
        a.symbols,
        rate=a.rate if paced else None,
        start_ms=hist_start if paced else None,
        regimes=regimes,
    )
    last_regime = None
    backfill: list[tuple[str, str | bytes | None]] = [BACKFILL_HEADER]
    # paced: ticks before this event time are history (sent at once, marked backfill)
    warm_until: int | None = base if paced and hist_ms else None
    warm_group: str | None = getattr(a, "warm_group", None) if warm_until else None
    warm_end = time.monotonic() + getattr(a, "warm_timeout", 600.0)
    n_backfill = 0
    for df in source:
        if regime_log is not None and "stressed" in df:
            last_regime = log_regimes(regime_log, df, last_regime)
        cols = [df[c].tolist() for c in TICK_COLUMNS]
        for sym, t, price, size, bid, ask in zip(*cols, strict=True):
            if t_event0 is None:
                t_event0 = t
            if warm_group and warm_until is not None and t >= warm_until:
                producer.flush(60)  # the history so far is in Kafka: wait for the group
                if caught_up(a.bootstrap, a.topic, warm_group, warm_end):
                    behind = now_ms_wall() - warm_until
                    warm_until = None if behind < CAUGHT_UP_MS else warm_until + behind
                else:
                    print(f"warm-up: group {warm_group} still behind; going live anyway")
                    warm_until = None
                if warm_until is None:
                    warm_group = None
                    print(
                        f"live: {n_backfill:,} ticks of history sent as backfill; the live ticks "
                        "follow in real time",
                        flush=True,
                    )
            if paced:
                due = (t - base) / 1000
            elif sent < n_hist:
                due = 0.0
            elif a.rate:
                due = (sent - n_hist) / a.rate
            elif a.speed > 0:
                due = (t - t_event0) / 1000 / a.speed
            else:
                due = 0.0
            if due > 0:
                wait = t_wall0 + due - time.monotonic()
                if wait > 0.002:
                    producer.poll(0)
                    time.sleep(wait)
            if paced:
                ev = int(t)
            elif sent < n_hist:
                ev = hist_start + int(sent * 1000 / a.rate)
            elif a.keep_time:
                ev = int(t)
            elif a.speed > 0 and not a.rate:
                ev = base + int((t - t_event0) / a.speed)
            else:
                ev = now_ms_wall()
            value = encode_row(sym, ev, price, size, bid, ask)
            # the back-dated history: before the live part began (real: the first n_hist)
            history = (warm_until is not None and ev < warm_until) or sent < n_hist
            headers = backfill if history else None
            n_backfill += history
            while True:
                try:
                    producer.produce(a.topic, value=value, key=sym, timestamp=ev, headers=headers)
                    break
                except BufferError:
                    producer.poll(0.05)
            sent += 1
            if sent % 1000 == 0:
                producer.poll(0)
                bar.update(1000)
    bar.update(sent % 1000)
    queued = producer.flush(timeout_s + 10)
    bar.close()
    deliveries.check(sent, queued)
    return sent


def caught_up(bootstrap: str, topic: str, group: str, until: float) -> bool:
    """Wait until ``group`` has committed every message of ``topic`` (False: not before the
    monotonic time ``until``)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        tps = [TopicPartition(topic, p) for p in parts]
        while True:
            high = [c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
            done = [tp.offset for tp in c.committed(tps, timeout=10)]
            if all(max(d, 0) >= h for d, h in zip(done, high, strict=True)):
                return True
            if time.monotonic() >= until:
                return False
            time.sleep(0.25)
    finally:
        c.close()


def log_regimes(path: Path, df: pd.DataFrame, last: bool | None) -> bool | None:
    """Append the frame's regime changes (written ahead of sending: readers compare the
    event times with their clock)."""
    st = df["stressed"].to_numpy(bool)
    if not len(st):
        return last
    prev = np.concatenate([[not st[0] if last is None else last], st[:-1]])
    t = df["event_time_ms"].to_numpy(np.int64)
    with path.open("a") as f:
        for i in np.flatnonzero(st != prev):
            f.write(f"{t[i]} {'stressed' if st[i] else 'calm'}\n")
    return bool(st[-1])


if __name__ == "__main__":
    main()
