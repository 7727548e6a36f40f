"""``make demo``: the whole product on this machine, live.

Starts Apache Kafka (KRaft, from Maven jars), the gRPC server on the built artifacts and
the consumer; replays synthetic crypto ticks into the ticks topic at a steady rate; and
prints live figures once a second from the services' own /metrics. Stops everything it
started at the end (or on Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from market.features import WARMUP_MS
from market.synthetic import STRESS_RATE
from server.rollback import set_artifact
from tools import kafka_broker, obs_stack, procs

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / ".run"
REGIMES = RUN / "demo-regimes.txt"
DEMO_CALM_S, DEMO_STRESSED_S = 40.0, 20.0
CONSUMER_GROUP = "volspike-consumer"  # the consumer's default group (consumer/config.py)
WARM_UP_S = 600.0  # the longest the live part waits for the history to be answered


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rate", type=float, default=5_000, help="ticks per second replayed")
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--server", default="native", choices=procs.SERVER_IMPLS)
    p.add_argument("--metrics-port", type=int, default=8000)
    p.add_argument("--consumer-metrics-port", type=int, default=8001)
    p.add_argument("--kafka-port", type=int, default=9092)
    p.add_argument("--prometheus-port", type=int, default=9090)
    p.add_argument("--rollback-at", type=float, help="switch to --rollback-to after this many s")
    p.add_argument("--rollback-to", default="xgb-v1")
    p.add_argument("--snapshot", type=Path, help="render the dashboard into this PNG at the end")
    args = p.parse_args()
    bootstrap = f"127.0.0.1:{args.kafka_port}"
    data = kafka_broker.KAFKA_HOME / "broker"
    started_kafka = not kafka_broker.running(data / "broker.pid")
    if started_kafka:  # our own broker: start from empty topics, no backlog to warm up from
        shutil.rmtree(data, ignore_errors=True)
    kafka_broker.up(args.kafka_port, args.kafka_port + 1, data, kafka_broker.TOPICS)
    server = consumer = replay = sample = prom = None
    model_config = RUN / "demo-model.toml"  # a copy: a demo rollback leaves config/ alone
    RUN.mkdir(exist_ok=True)
    shutil.copy(ROOT / "config" / "model.toml", model_config)
    try:
        server = procs.start_server(
            args.server,
            "--port",
            str(args.port),
            "--metrics-port",
            str(args.metrics_port),
            "--pid-file",
            str(RUN / "server.pid"),
            "--model-config",
            str(model_config),
            log=RUN / "demo-server.log",
        )
        procs.wait_serving(f"127.0.0.1:{args.port}", server)
        consumer = procs.start(
            "consumer",
            "--bootstrap",
            bootstrap,
            "--server",
            f"127.0.0.1:{args.port}",
            "--metrics-port",
            str(args.consumer_metrics_port),
            log=RUN / "demo-consumer.log",
        )
        # back-dated ticks first, so symbols are past their 300 s warm-up when the live part
        # starts (without them every symbol answers "warming up" for its first 300 s); they
        # are marked backfill, and the live ticks wait until the consumer has answered them
        # (--warm-group), so none is late for the freshness SLI because of the warm-up
        history = WARMUP_MS // 1000 + 20
        # --rate is the calm rate; stressed regimes send up to STRESS_RATE x faster: enough
        # ticks for the whole run and the warm-up (the replay is stopped at the end)
        count = int(args.rate * STRESS_RATE * (args.seconds + history + WARM_UP_S))
        symbols = max(4, int(args.rate / 20))  # ~20 trades/s per symbol, like the real data
        replay_args = [
            "--bootstrap",
            bootstrap,
            "--source",
            "synthetic",
            "--rate",
            str(args.rate),
            "--count",
            str(count),
            "--symbols",
            str(symbols),
            "--quiet",
            "--history-seconds",
            str(history),
            "--warm-group",
            CONSUMER_GROUP,
            "--warm-timeout",
            str(WARM_UP_S),
            # shorter regimes than the generator's 180 s / 45 s, so a one-minute demo sees
            # both; the replay logs every change, the figures below show the current one
            "--calm-s",
            str(DEMO_CALM_S),
            "--stressed-s",
            str(DEMO_STRESSED_S),
            "--regimes",
            str(REGIMES),
        ]
        REGIMES.unlink(missing_ok=True)
        prom = start_prometheus(args)
        t_start = time.monotonic()
        replay = procs.start("tools.replay", *replay_args, log=RUN / "demo-replay.log")
        print(
            f"kafka {bootstrap} | server 127.0.0.1:{args.port} (metrics :{args.metrics_port})"
            f" | consumer metrics :{args.consumer_metrics_port} | {history} s of history, then "
            f"synthetic ticks of {symbols} symbols at {args.rate:,.0f}/s; logs in .run/"
        )
        sample = Sample(bootstrap)
        sample.start()
        warm_up(args, replay)
        # a little later, so Prometheus has seen the dead-letter counters at 0 first
        threading.Timer(min(20.0, args.seconds / 3), send_bad_ticks, (bootstrap,)).start()
        t0 = time.monotonic()
        if args.rollback_at is not None:
            live(args, t0 + args.rollback_at, sample)
            old = set_artifact(model_config, args.rollback_to)
            os.kill(int((RUN / "server.pid").read_text()), signal.SIGHUP)
            print(f"rollback: {old} -> {args.rollback_to} (config edited, SIGHUP sent)")
        live(args, t0 + args.seconds + 3, sample)
        print(regime_summary())
        if prom is not None and args.snapshot:
            from tools.dashboard_snapshot import render

            # the warm-up included: backfill answered, then the live part
            render(prom.url, args.snapshot, max(1.0, (time.monotonic() - t_start) / 60))
            print(f"dashboard picture: {args.snapshot}")
    finally:
        for proc in (replay, consumer, server):
            procs.stop(proc)
        if prom is not None:
            prom.stop()
        if sample is not None:
            sample.stop.set()
            sample.join(5)
        if started_kafka:
            kafka_broker.down(data)
    print("stopped: replay, consumer, server" + (", kafka" if started_kafka else ""))
    if prom is not None:
        print(
            f"Prometheus ran at {prom.url} (data in .run/prometheus). For a dashboard picture: "
            "make dashboard-snapshot (a demo with a rollback, rendered to docs/dashboard.png)"
        )


def warm_up(args: argparse.Namespace, replay) -> None:
    """Until the replay goes live (the consumer has answered the history): progress from the
    consumer's /metrics every 2 s."""
    log = RUN / "demo-replay.log"
    next_print = time.monotonic() + 2
    while replay.poll() is None and "live:" not in log.read_text(errors="replace"):
        time.sleep(0.2)
        if time.monotonic() >= next_print:
            next_print += 2
            c = procs.scrape(args.consumer_metrics_port)
            answered = c.get("volspike_consumer_predictions_produced_total", 0)
            backfill = c.get("volspike_consumer_backfill_predictions_total", 0)
            print(
                f"warm-up: {answered:,.0f} history ticks answered, {backfill:,.0f} of them "
                "outside the freshness SLI (backfill); offset lag "
                f"{c.get('volspike_consumer_offset_lag', 0):,.0f}",
                flush=True,
            )
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith(("warm-up:", "live:")):  # a timeout says so too
            print(f"replay {line}")


def send_bad_ticks(bootstrap: str) -> None:
    """A few hostile messages, so the dead-letter path shows in the figures."""
    from confluent_kafka import Producer

    now = int(time.time() * 1000)
    bad = [
        b"not json",
        json.dumps({"symbol": "BTC-USD", "event_time_ms": now, "price": 1e39, "size": 1}).encode(),
        json.dumps(
            {"symbol": "BTC-USD", "event_time_ms": now + 3_600_000, "price": 1, "size": 1}
        ).encode(),
    ]
    p = Producer({"bootstrap.servers": bootstrap, "log_level": 0})
    for value in bad:
        p.produce("ticks", value, key=b"BTC-USD")
    p.flush(10)
    print(f"sent {len(bad)} malformed ticks: they go to ticks.dlq with their reason (dlq column)")


def start_prometheus(args: argparse.Namespace) -> obs_stack.Prometheus | None:
    """Prometheus beside the demo when it is built (`make go-tools`); the demo runs without."""
    if not (obs_stack.PROMETHEUS_BIN / "prometheus").exists():
        print("Prometheus is not built: `make go-tools` once (~10 min) to have it beside the demo")
        return None
    # this demo's series only: an earlier demo's would stay in the 1 h .. 3 d windows
    shutil.rmtree(RUN / "prometheus" / "tsdb", ignore_errors=True)
    prom = obs_stack.Prometheus(RUN / "prometheus", port=args.prometheus_port, interval="2s")
    prom.start([f"127.0.0.1:{args.metrics_port}"], [f"127.0.0.1:{args.consumer_metrics_port}"])
    print(f"Prometheus {prom.url} scraping the server and the consumer every 2 s")
    return prom


class Sample(threading.Thread):
    """Keeps the latest prediction from the predictions topic, to show a real answer."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.latest: dict | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        # plain assignment at the end of each partition: no group, nothing to rebalance
        c = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "demo-viewer",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )
        parts = c.list_topics("predictions", timeout=10).topics["predictions"].partitions
        c.assign([TopicPartition("predictions", p, OFFSET_END) for p in parts])
        while not self.stop.is_set():
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    value = m.value()
                    assert value is not None  # every prediction carries a value
                    self.latest = json.loads(value)
        c.close()


def live(args: argparse.Namespace, end: float, sample: Sample) -> None:
    prev_c = procs.scrape(args.consumer_metrics_port)
    prev_s = procs.scrape(args.metrics_port)
    print(
        f"{'ticks in/s':>10} {'answers/s':>10} {'dlq':>5} {'lag p95':>8} {'Predict/s':>9} "
        f"{'Predict p95':>11} {'spike%':>7} {'warm%':>6} {'regime':>8}  latest prediction"
    )
    while time.monotonic() < end:
        time.sleep(1.0)
        c = procs.scrape(args.consumer_metrics_port)
        s = procs.scrape(args.metrics_port)
        consumed = c.get("volspike_consumer_messages_consumed_total", 0) - prev_c.get(
            "volspike_consumer_messages_consumed_total", 0
        )
        answered = c.get("volspike_consumer_predictions_produced_total", 0) - prev_c.get(
            "volspike_consumer_predictions_produced_total", 0
        )
        dlq = c.get("volspike_consumer_dead_lettered_total", 0)
        lag = procs.quantile_from_buckets(
            prev_c, c, "volspike_consumer_end_to_end_lag_seconds", 0.95
        )
        calls = s.get("volspike_rpc_requests_total", 0) - prev_s.get(
            "volspike_rpc_requests_total", 0
        )
        p95 = procs.quantile_from_buckets(prev_s, s, "volspike_rpc_duration_seconds", 0.95)
        rows = s.get("volspike_predictions_total", 0) - prev_s.get("volspike_predictions_total", 0)
        pos = s.get("volspike_positive_labels_total", 0) - prev_s.get(
            "volspike_positive_labels_total", 0
        )
        warming = c.get("volspike_consumer_warming_up_total", 0) - prev_c.get(
            "volspike_consumer_warming_up_total", 0
        )
        regime = regime_now()
        # tallied only once the backlog is drained: rows scored now are ticks of now
        if regime is not None and rows and lag is not None and lag <= 1.0:
            tally = TALLY.setdefault(regime, [0.0, 0.0])
            tally[0] += pos
            tally[1] += rows
        latest = sample.latest
        if not latest:
            shown = "-"
        elif latest["warming_up"]:
            shown = f"{latest['symbol']} warming up (no probability yet)"
        else:
            shown = (
                f"{latest['symbol']} p={latest['probability']:.3f} "
                f"label={int(latest['label'])} {latest['artifact']}"
            )
        print(
            f"{consumed:10,.0f} {answered:10,.0f} {dlq:5,.0f} "
            f"{_ms(lag):>8} {calls:9,.0f} {_ms(p95):>11} "
            f"{(pos / rows * 100 if rows else 0):6.1f}% "
            f"{(warming / consumed * 100 if consumed else 0):5.1f}% {regime or '-':>8}  {shown}",
            flush=True,
        )
        prev_c, prev_s = c, s


TALLY: dict[str, list[float]] = {}  # regime -> [positive labels, rows scored]


def regime_now() -> str | None:
    """The generator's regime at this moment (the replay logs every change ahead)."""
    now = time.time() * 1000
    current = None
    try:
        lines = REGIMES.read_text().split("\n")
    except OSError:
        return None
    for line in lines:
        t, _, name = line.partition(" ")
        if not name:
            continue
        if int(t) > now:
            break
        current = name
    return current


def regime_summary() -> str:
    parts = [
        f"{name} {pos / rows * 100:.1f}% of {rows:,.0f} rows"
        for name, (pos, rows) in sorted(TALLY.items())
        if rows
    ]
    return "spike share by regime (rows scored while it held, lag p95 <= 1 s): " + (
        "; ".join(parts) or "-"
    )


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"<={seconds * 1000:g}ms"


if __name__ == "__main__":
    main()
