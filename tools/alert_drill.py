"""Game day: walk every alert's runbook section for real on a stack of its own (Kafka, native
server, consumer, Prometheus with the project's rules at 1 s intervals, a steady synthetic
stream): inject the fault, wait for the alert to fire in Prometheus, apply the runbook's
mitigation, verify recovery with the runbook's query. Prints one line per step with the time
it took and writes the log to --out. About 60 minutes (the drift alerts need 30 minutes of
drift; the consumer is killed only after them, since that restarts their clock); loopback
only; stops what it started.

    python -m tools.alert_drill [--out reports/alert-drill.txt] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from market.features import N_FEATURES, WARMUP_MS
from market.synthetic import STRESS_RATE
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from server.rollback import set_artifact
from tools import kafka_broker, procs
from tools.kafka_io import Topics
from tools.obs_stack import Prometheus
from tools.procs import ROOT, free_port

RATE = 300  # ticks/s of the steady stream


@dataclass
class Stack:
    work: Path
    kafka: str
    topics: Topics
    models: Path
    config: Path
    port: int
    mport: int
    cport: int
    server: subprocess.Popen | None = None
    consumer: subprocess.Popen | None = None
    prom: Prometheus | None = None
    replay: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_server(self) -> None:
        self.server = procs.start_server(
            "native", "--port", str(self.port), "--metrics-port", str(self.mport),
            "--model-config", str(self.config), log=self.work / "server.log",
            env={"VOLSPIKE_MODELS_DIR": str(self.models), "VOLSPIKE_RELOAD_POLL_SECONDS": "0.5"},
        )  # fmt: skip

    def start_consumer(self) -> None:
        env = {
            "VOLSPIKE_CONSUMER_TICKS_TOPIC": self.topics.ticks,
            "VOLSPIKE_CONSUMER_PREDICTIONS_TOPIC": self.topics.predictions,
            "VOLSPIKE_CONSUMER_DLQ_TOPIC": self.topics.dlq,
            "VOLSPIKE_CONSUMER_GROUP_ID": self.topics.group,
            "VOLSPIKE_CONSUMER_LIVE_SAMPLE_DIR": str(self.work / "live-sample"),
            "VOLSPIKE_CONSUMER_LIVE_SAMPLE_FLUSH_S": "5",
            "VOLSPIKE_CONSUMER_DRIFT_REPORT_METRICS": str(self.work / "drift" / "metrics.json"),
        }
        self.consumer = procs.start(
            "consumer", "--bootstrap", self.kafka, "--server", self.address,
            "--metrics-port", str(self.cport), log=self.work / "consumer.log", env=env,
        )  # fmt: skip

    def replay_args(self, *args: str) -> list[str]:
        return ["--bootstrap", self.kafka, "--topic", self.topics.ticks, "--quiet", *args]

    def query(self, expr: str) -> float | None:
        assert self.prom is not None  # started before any scenario
        r = self.prom.query(expr)
        return float(r[0]["value"][1]) if r else None

    def firing(self) -> set[str]:
        assert self.prom is not None  # started before any scenario
        alerts = self.prom.api("alerts")["alerts"]
        return {a["labels"]["alertname"] for a in alerts if a["state"] == "firing"}


def all_firing(s: Stack, alerts: tuple[str, ...]) -> bool:
    return set(alerts) <= s.firing()


def wait(cond: Callable[[], bool], timeout: float, step: float = 2.0) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if cond():
                return time.monotonic() - t0
        except Exception:  # a target down mid-query, etc.: try again
            pass
        time.sleep(step)
    return None


class Load(threading.Thread):
    """A client calling Predict in a loop until stopped (bad requests or huge batches)."""

    def __init__(self, address: str, req: pb.PredictRequest, threads: int = 1) -> None:
        super().__init__(daemon=True)
        self.address, self.req, self.threads = address, req, threads
        self.stop = threading.Event()

    def run(self) -> None:
        def loop() -> None:
            with grpc.insecure_channel(self.address) as ch:
                stub = pb_grpc.PredictorStub(ch)
                end = time.monotonic() + 1800  # bounded in time whatever happens
                while not self.stop.is_set() and time.monotonic() < end:
                    try:
                        stub.Predict(self.req, timeout=10)
                    except grpc.RpcError:
                        time.sleep(0.01)

        workers = [threading.Thread(target=loop, daemon=True) for _ in range(self.threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()


@dataclass
class Scenario:
    name: str
    alerts: tuple[str, ...]
    inject: Callable[[Stack], Any]  # returns a handle: a Load, an Event, a Popen or None
    mitigate: Callable[[Stack, Any], object]  # given that handle
    recovered: Callable[[Stack], bool]
    fire_timeout: float
    recover_timeout: float = 120.0


def scenarios() -> list[Scenario]:
    bad = pb.PredictRequest(rows=[pb.Row(features={"price": 1.0})])  # INVALID_ARGUMENT
    rows = np.zeros((100_000, N_FEATURES), "<f4").tobytes()
    big = pb.PredictRequest(packed=pb.PackedRows(float32_le=rows, num_features=N_FEATURES))

    def rollback(s: Stack, name: str) -> None:  # what `make rollback ARTIFACT=name` does
        set_artifact(s.config, name)
        assert s.server is not None  # started in main()
        s.server.send_signal(signal.SIGHUP)

    def start_load(req, threads):
        def inject(s: Stack) -> Load:
            load = Load(s.address, req, threads)
            load.start()
            return load

        return inject

    def stop_load(_s: Stack, load: Load) -> None:
        load.stop.set()
        load.join(30)

    def broken_server(s: Stack) -> None:
        procs.stop(s.server)
        set_artifact(s.config, "xgb-broken")
        s.start_server()

    def dead_letters(s: Stack) -> threading.Event:
        from confluent_kafka import Producer

        stop = threading.Event()

        def loop() -> None:
            p = Producer({"bootstrap.servers": s.kafka, "log_level": 0})
            end = time.monotonic() + 900
            while not stop.is_set() and time.monotonic() < end:
                for _ in range(20):  # ~7 % of the 300/s stream
                    p.produce(s.topics.ticks, b"not json", key=b"BAD")
                p.poll(0)
                time.sleep(1)
            p.flush(10)

        threading.Thread(target=loop, daemon=True).start()
        return stop

    def old_ticks(s: Stack) -> subprocess.Popen:
        args = s.replay_args("--source", "real", "--count", "60000", "--keep-time")
        return procs.start("tools.replay", *args, log=s.work / "replay-old.log")

    def stale_report(s: Stack) -> None:
        (s.work / "drift").mkdir(exist_ok=True)
        old = {"artifact": "xgb-v2", "timestamp": time.time() - 27 * 3600, "drifted_share": 0.0}
        (s.work / "drift" / "metrics.json").write_text(json.dumps(old))

    def run_drift_report(s: Stack, _x) -> None:
        subprocess.run(
            [str(ROOT / ".venv-drift" / "bin" / "python"), "-m", "drift.report",
             "--artifact", "xgb-v2", "--models-dir", str(s.models),
             "--live", str(s.work / "live-sample"), "--out", str(s.work / "drift")],
            cwd=ROOT, capture_output=True, timeout=300,
        )  # fmt: skip

    def kill_consumer(s: Stack) -> None:
        assert s.consumer is not None  # started in main()
        s.consumer.kill()
        s.consumer.wait()

    def serving(s: Stack) -> bool:
        return s.query("min(volspike_serving)") == 1.0

    def answering(s: Stack) -> bool:
        return (s.query("sum(rate(volspike_consumer_predictions_produced_total[30s]))") or 0) > 50

    return [
        Scenario(
            "failed rollback",
            ("VolspikeModelLoadFailed",),
            lambda s: rollback(s, "xgb-broken"),
            lambda s, _: rollback(s, "xgb-v2"),
            lambda s: (
                serving(s) and s.query('max(volspike_active_model_info{artifact="xgb-v2"})') == 1.0
            ),
            60,
        ),
        Scenario(
            "a caller sends bad requests",
            ("VolspikeErrorsBudgetBurnFast", "VolspikeErrorsBudgetBurnSlow"),
            start_load(bad, 2),
            stop_load,
            lambda s: (
                s.query('sum(rate(volspike_rpc_requests_total{method="Predict",code!="OK"}[30s]))')
                == 0
            ),
            180,
        ),
        Scenario(
            "huge batches saturate the server",
            ("VolspikeLatencyBudgetBurnFast", "VolspikeLatencyBudgetBurnSlow"),
            start_load(big, 4),
            stop_load,
            lambda s: (
                (
                    s.query(
                        "histogram_quantile(0.95, sum by (le) (rate("
                        'volspike_rpc_duration_seconds_bucket{method="Predict"}[30s])))'
                    )
                    or 1
                )
                < 0.025
            ),
            240,
        ),
        Scenario(
            "old ticks replayed (13 years late)",
            ("VolspikeFreshnessBudgetBurnFast", "VolspikeFreshnessBudgetBurnSlow"),
            old_ticks,
            lambda s, proc: procs.stop(proc),
            lambda s: (
                (
                    s.query(
                        "histogram_quantile(0.95, sum by (le) (rate("
                        "volspike_consumer_end_to_end_lag_seconds_bucket[30s])))"
                    )
                    or 99
                )
                < 30
            ),
            240,
        ),
        Scenario(
            "server restarted on a broken artifact",
            (
                "VolspikeServerNotServing",
                "VolspikeAvailabilityBudgetBurnFast",
                "VolspikeAvailabilityBudgetBurnSlow",
            ),
            broken_server,
            lambda s, _: rollback(s, "xgb-v2"),
            lambda s: serving(s) and answering(s),
            240,
        ),
        Scenario(
            "a producer sends garbage",
            ("VolspikeDeadLetterRatioHigh",),
            dead_letters,
            lambda s, stop: stop.set(),
            lambda s: s.query("sum(rate(volspike_consumer_dead_lettered_total[30s]))") == 0,
            480,
        ),
        Scenario(
            "server down for 11 minutes",
            (
                "VolspikeTargetDown",
                "VolspikeServerMetricsAbsent",
                "VolspikeConsumerStalled",
                "VolspikeThroughputBelowFloor",
                "VolspikeConsumerOffsetLagHigh",
            ),
            lambda s: procs.stop(s.server),
            lambda s, _: s.start_server(),
            lambda s: serving(s) and answering(s),
            1260,  # the lag must pass 100,000 first, then 10 minutes
            300,
        ),
        Scenario(
            "the daily drift report did not run",
            ("VolspikeDriftReportStale",),
            stale_report,
            run_drift_report,
            lambda s: (
                (s.query("time() - max(volspike_drift_report_timestamp_seconds)") or 9e9) < 600
            ),
            60,
        ),
        Scenario(
            "the stream is not the market the model learned (watched since the start)",
            ("VolspikeFeatureDrift", "VolspikePredictionDrift"),
            lambda s: None,
            lambda s, _: rollback(s, "crypto-v1"),  # the runbook: an artifact for this market
            lambda s: (
                (s.query("max(volspike_drift:drifted_feature_share:15m)") or 0) < 0.5
                and (s.query('max(volspike_drift:psi:15m{feature="prediction"})') or 0) < 0.2
                and not s.firing() & {"VolspikeFeatureDrift", "VolspikePredictionDrift"}
            ),
            2400,
            1500,
        ),
        Scenario(
            "consumer killed",
            ("VolspikeConsumerMetricsAbsent",),
            kill_consumer,
            lambda s, _: s.start_consumer(),
            answering,
            420,
        ),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "alert-drill.txt")
    p.add_argument("--only", nargs="*", help="scenario names (substrings) to run")
    p.add_argument("--rate", type=int, default=RATE, help="ticks/s of the steady stream")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still stop what we started
    work = Path(tempfile.mkdtemp(prefix="alert-drill-"))
    from tests.conftest import artifact_dir
    from tests.server.test_hostile import TRUNCATIONS, models_with  # the broken artifact

    models = models_with(work, ("xgb-broken", {"lib": TRUNCATIONS["half"]}))
    shutil.copytree(artifact_dir("crypto-v1"), models / "crypto-v1")  # the drift mitigation
    kport = free_port()
    kafka_broker.up(kport, free_port(), work / "kafka", {})
    kafka = f"127.0.0.1:{kport}"
    config = work / "model.toml"
    config.write_text('artifact = "xgb-v2"\n')
    s = Stack(
        work, kafka, Topics.fresh(kafka), models, config, free_port(), free_port(), free_port()
    )
    lines: list[str] = []

    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        lines.append(line)

    try:
        s.start_server()
        assert s.server is not None
        procs.wait_serving(s.address, s.server)
        s.start_consumer()
        s.prom = Prometheus(work / "prom").start([f"127.0.0.1:{s.mport}"], [f"127.0.0.1:{s.cport}"])
        count = int(args.rate * STRESS_RATE * 3600)  # calm rate; stressed regimes are faster
        s.replay = procs.start(
            "tools.replay", *s.replay_args("--source", "synthetic", "--rate", str(args.rate),
                                           "--count", str(count)),
            log=work / "replay.log",
        )  # fmt: skip
        log(f"stack up in {work}: Kafka {kafka}, server {s.address}, Prometheus {s.prom.url}")
        # a steady state to break, past every symbol's 300 s warm-up (no back-dated history:
        # it would burn freshness)
        time.sleep(WARMUP_MS / 1000 + 30)
        chosen = [c for c in scenarios() if not args.only or any(o in c.name for o in args.only)]
        for sc in chosen:
            log(f"== {sc.name}: expecting {', '.join(sc.alerts)}")
            before = s.firing() & set(sc.alerts)
            if before:
                log(f"   already firing before the fault: {sorted(before)}")
            handle = sc.inject(s)
            took = wait(partial(all_firing, s, sc.alerts), sc.fire_timeout, 3)
            fired = s.firing() & set(sc.alerts)
            if took is None:
                log(f"   NOT all fired within {sc.fire_timeout:.0f} s; firing: {sorted(fired)}")
            else:
                log(f"   fired after {took:.0f} s: {sorted(fired)}")
            sc.mitigate(s, handle)
            back = wait(partial(sc.recovered, s), sc.recover_timeout, 2)
            log(
                f"   mitigated; recovery {'verified' if back is not None else 'NOT verified'}"
                + (f" after {back:.0f} s" if back is not None else "")
            )
            still = s.firing() & set(sc.alerts)
            log(f"   still firing right after recovery: {sorted(still) or 'none'}")
    finally:
        for proc in (s.replay, s.consumer, s.server):
            procs.stop(proc)
        if s.prom is not None:
            s.prom.stop()
        kafka_broker.down(work / "kafka")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")
    os.sync()


if __name__ == "__main__":
    main()
