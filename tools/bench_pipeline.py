"""``make bench-pipeline``: end-to-end ticks/s and lag on this machine, all parts real.

Broker (Kafka 4, KRaft), server (native unless ``--server python``), consumer and the
replay all share the 2 cores. For each input rate the replay sends the synthetic stream in
its own event time for ``--seconds`` (the rate is the calm rate: stressed stretches send
twice as fast; ~20 trades/s per symbol) into fresh topics with a fresh consumer; "max"
sends as fast as it can (event time = send time). Before each, 320 s of sparse back-dated
history (not measured) takes every symbol past its 300 s warm-up, so measured ticks are
scored. Lag = the consumer's produce time minus event time, from every answer to a measured
tick (its ``latency_ms``). Throughput = those answers / (last - first answer's Kafka
timestamp).

"drain" is the backlog case: the history and ``--max-count`` ticks are in the topic before
the consumer starts, so it drains them with the whole machine but the broker and server to
itself. For every rate the CPU time per tick is printed too (from /proc): the consumer's
(main thread and whole process), the broker's, the server's and the replay's, a budget a
busy machine changes less than ticks/s, and the sum says what 2 cores can carry.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from confluent_kafka import Message

from tools import kafka_broker, procs
from tools.kafka_io import Topics, read_topic
from tools.procs import cpu_seconds, free_port

RUN = Path(__file__).resolve().parent.parent / ".run"
WARM_RATE, WARM_SECONDS = 150, 320
WARM_COUNT = WARM_RATE * WARM_SECONDS  # ends before "now": a short gap, symbols stay warm


def _answer(m: Message) -> dict:
    value = m.value()
    assert value is not None  # every prediction carries a value
    return json.loads(value)


def _replay_args(kafka: str, topic: str, count: int, symbols: int) -> list[str]:
    return ["--bootstrap", kafka, "--topic", topic, "--source", "synthetic", "--count",
            str(count), "--symbols", str(symbols), "--quiet"]  # fmt: skip


def one_rate(
    kafka: str,
    server: str,
    rate: float | None,
    seconds: float,
    count_max: int,
    drain: bool,
    pids: dict[str, int],
) -> dict:
    topics = Topics.fresh(kafka)
    env = {
        "VOLSPIKE_CONSUMER_TICKS_TOPIC": topics.ticks,
        "VOLSPIKE_CONSUMER_PREDICTIONS_TOPIC": topics.predictions,
        "VOLSPIKE_CONSUMER_DLQ_TOPIC": topics.dlq,
        "VOLSPIKE_CONSUMER_GROUP_ID": topics.group,
    }

    def start_consumer() -> subprocess.Popen:
        return procs.start(
            "consumer",
            "--bootstrap",
            kafka,
            "--server",
            server,
            "--metrics-port",
            str(free_port()),
            log=RUN / "bench-consumer.log",
            env=env,
        )

    consumer = None if drain else start_consumer()
    if consumer:
        time.sleep(3)  # joined the group
    count = int(rate * seconds) if rate else count_max
    symbols = int((rate or 20_000) / 20)
    # Warm-up, not measured: 320 s of sparse back-dated history for the same symbols, so
    # they are past their 300 s warm-up and the measured ticks are all scored by Predict.
    warm = [*_replay_args(kafka, topics.ticks, WARM_COUNT, symbols), "--seed", "1"]
    warm += ["--rate", str(WARM_RATE), "--history-seconds", str(WARM_SECONDS)]
    procs.start("tools.replay", *warm, log=RUN / "bench-replay-warm.log").wait()
    cpu0 = (0.0, 0.0)
    if consumer:
        read_topic(kafka, topics.predictions, WARM_COUNT, timeout=120)
        cpu0 = (cpu_seconds(consumer.pid, consumer.pid), cpu_seconds(consumer.pid))
    start_ms = time.time() * 1000
    args = [
        "--bootstrap",
        kafka,
        "--topic",
        topics.ticks,
        "--source",
        "synthetic",
        "--count",
        str(count),
        "--symbols",
        str(symbols),
        "--quiet",
    ]
    if rate:
        args += ["--rate", str(rate)]
    t0 = time.monotonic()
    others0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    replay = procs.start("tools.replay", *args, log=RUN / "bench-replay.log")
    replay.wait()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    replay_cpu = children.ru_utime + children.ru_stime - children0.ru_utime - children0.ru_stime
    replay_s = time.monotonic() - t0
    if consumer is None:  # drain: the backlog is in; the history is answered first
        consumer = start_consumer()
    msgs = read_topic(kafka, topics.predictions, WARM_COUNT + count, timeout=180)
    cpu = (cpu_seconds(consumer.pid, consumer.pid) - cpu0[0], cpu_seconds(consumer.pid) - cpu0[1])
    others = {name: cpu_seconds(pid) - others0[name] for name, pid in pids.items()}
    procs.stop(consumer)
    cpu_ticks = count + (WARM_COUNT if drain else 0)  # the CPU spent on the history too
    msgs = [m for m in msgs if _answer(m)["event_time_ms"] >= start_ms]
    warming = sum(_answer(m)["warming_up"] for m in msgs)
    lat = np.array([_answer(m)["latency_ms"] for m in msgs], dtype=float)
    ts = np.array([m.timestamp()[1] for m in msgs], dtype=float)
    span_s = (ts.max() - ts.min()) / 1000 if len(ts) > 1 else float("nan")
    return {
        "rate": rate,
        "sent": count,
        "replay_rate": count / replay_s,
        "answered": len(
            {(_answer(m)["source_partition"], _answer(m)["source_offset"]) for m in msgs}
        ),
        "warming": warming,
        "throughput": len(msgs) / span_s if span_s > 0 else float("nan"),
        "p50": float(np.percentile(lat, 50)),
        "p95": float(np.percentile(lat, 95)),
        "p99": float(np.percentile(lat, 99)),
        "main_us": cpu[0] / cpu_ticks * 1e6,
        "process_us": cpu[1] / cpu_ticks * 1e6,
        # the rest of the machine's CPU per measured tick (the broker also stores the
        # predictions; the replay only sends the measured ticks)
        **{f"{name}_us": c / count * 1e6 for name, c in others.items()},
        "replay_us": replay_cpu / count * 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--rates", default="2000,5000,10000,20000,max,drain")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--max-count", type=int, default=400_000)
    p.add_argument("--server", default="native", choices=procs.SERVER_IMPLS)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kport = free_port()
        broker_pid = kafka_broker.up(kport, free_port(), Path(tmp) / "kafka", {})
        kafka = f"127.0.0.1:{kport}"
        gport = free_port()
        server = procs.start_server(
            args.server,
            "--port",
            str(gport),
            "--metrics-port",
            str(free_port()),
            log=RUN / "bench-server.log",
        )
        results = []
        try:
            procs.wait_serving(f"127.0.0.1:{gport}", server)
            for r in args.rates.split(","):
                rate = None if r in ("max", "drain") else float(r)
                pids = {"broker": broker_pid, "server": server.pid}
                res = one_rate(
                    kafka,
                    f"127.0.0.1:{gport}",
                    rate,
                    args.seconds,
                    args.max_count,
                    r == "drain",
                    pids,
                )
                res["label"] = r
                results.append(res)
                print(
                    f"rate {r:>6}: sent {res['sent']:,} at {res['replay_rate']:,.0f}/s, "
                    f"answered {res['answered']:,}, {res['throughput']:,.0f} predictions/s, "
                    f"lag p50 {res['p50']:.0f} p95 {res['p95']:.0f} p99 {res['p99']:.0f} ms, "
                    f"consumer CPU {res['main_us']:.1f} us/tick main thread, "
                    f"{res['process_us']:.1f} process; broker {res['broker_us']:.1f}, "
                    f"server {res['server_us']:.1f}, replay {res['replay_us']:.1f} us/tick",
                    flush=True,
                )
        finally:
            procs.stop(server)
            kafka_broker.down(Path(tmp) / "kafka")
    print()
    print(
        "| input rate (ticks/s) | ticks sent | replay achieved/s | answered | warming up "
        "| predictions/s | lag p50 ms | lag p95 ms | lag p99 ms | CPU us/tick: consumer main "
        "thread | consumer | broker | server | replay |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        named = {"max": "as fast as possible", "drain": "backlog (drain)"}
        label = named[r["label"]] if r["rate"] is None else f"{r['rate']:,.0f}"
        print(
            f"| {label} | {r['sent']:,} | {r['replay_rate']:,.0f} | {r['answered']:,} | "
            f"{r['warming']:,} | {r['throughput']:,.0f} | {r['p50']:,.0f} | {r['p95']:,.0f} | "
            f"{r['p99']:,.0f} | {r['main_us']:.1f} | {r['process_us']:.1f} | "
            f"{r['broker_us']:.1f} | {r['server_us']:.1f} | {r['replay_us']:.1f} |"
        )


if __name__ == "__main__":
    main()
