"""``make demo``: start the gRPC server on the built artifacts, stream synthetic ticks
through the per-symbol feature code into batched Predict calls, print live figures.

Kafka (replay -> consumer -> predictions topic) is not built yet; until it is, this
process plays the consumer's part: features, micro-batches, packed Predict calls.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np

from market.features import N_FEATURES, FeatureState
from market.synthetic import SyntheticTicks
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parent.parent


def start_server(port: int, metrics_port: int) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "server",
        "--port",
        str(port),
        "--metrics-port",
        str(metrics_port),
        "--pid-file",
        str(ROOT / ".run" / "server.pid"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = (ROOT / ".run").joinpath("demo-server.log")
    log.parent.mkdir(exist_ok=True)
    return subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def wait_ready(stub: pb_grpc.PredictorStub, proc: subprocess.Popen) -> pb.ModelInfoResponse:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited with {proc.returncode}; see .run/demo-server.log")
        try:
            return stub.ModelInfo(pb.ModelInfoRequest(), timeout=1)
        except grpc.RpcError:
            time.sleep(0.1)
    sys.exit("server did not become ready in 30 s; see .run/demo-server.log")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--port", type=int, default=50051)
    p.add_argument("--metrics-port", type=int, default=8000)
    p.add_argument("--batch", type=int, default=256, help="max rows per Predict call")
    args = p.parse_args()
    server = start_server(args.port, args.metrics_port)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{args.port}") as ch:
            stub = pb_grpc.PredictorStub(ch)
            info = wait_ready(stub, server)
            print(
                f"server 127.0.0.1:{args.port} serving {info.artifact} "
                f"(sha256 {info.artifact_sha256[:12]}); metrics "
                f"http://127.0.0.1:{args.metrics_port}/metrics"
            )
            print(
                "[demo] Kafka replay/consumer not built yet: this process computes "
                "features and batches them into Predict calls itself"
            )
            stream(stub, args.seconds, args.batch)
    finally:
        server.send_signal(signal.SIGTERM)
        print(f"server stopped (exit {server.wait(30)})")


def stream(stub: pb_grpc.PredictorStub, seconds: float, batch: int) -> None:
    ticks = SyntheticTicks(seed=7)
    states: dict[str, FeatureState] = {}
    buf = np.empty((batch, N_FEATURES), np.float32)
    end = time.monotonic() + seconds
    report = time.monotonic() + 1.0
    total = spikes = 0
    lat: list[float] = []
    artifact = ""
    while time.monotonic() < end:
        frame = ticks.frame(batch)
        cols = [
            frame[c].tolist() for c in ("symbol", "event_time_ms", "price", "size", "bid", "ask")
        ]
        for i, (sym, t, price, size, bid, ask) in enumerate(zip(*cols, strict=True)):
            st = states.get(sym) or states.setdefault(sym, FeatureState())
            buf[i] = st.update(t, price, size, bid, ask)
        req = pb.PredictRequest(
            packed=pb.PackedRows(float32_le=buf.tobytes(), num_features=N_FEATURES)
        )
        t0 = time.perf_counter()
        resp = stub.Predict(req, timeout=5)
        lat.append(time.perf_counter() - t0)
        total += len(resp.labels)
        spikes += sum(resp.labels)
        artifact = resp.artifact
        if time.monotonic() >= report:
            p50, p95 = np.percentile(lat, [50, 95]) * 1e3
            print(
                f"ticks {total:>9,}  spike-rate {spikes / total:6.2%}  Predict({batch} rows) "
                f"p50 {p50:5.2f} ms p95 {p95:5.2f} ms  artifact {artifact}"
            )
            lat.clear()
            report += 1.0
    print(f"done: {total:,} ticks scored over gRPC in {seconds:.0f} s")


if __name__ == "__main__":
    main()
