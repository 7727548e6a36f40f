"""``make bench-server``: our servers vs Seldon MLServer (mlserver-xgboost) on the same
XGBoost model, same requests, same load generator (ghz, written in Go), one run.

Cores on this 2-core machine: each server is pinned to core 1 (`taskset -c 1`) and ghz to
core 0, so the load generator never takes the server's CPU and every server gets the same
budget. A last section runs the native server unpinned (both cores, shared with ghz: how
it is deployed here).
Ours: the native (Go) front end that `make serve` runs, and the Python reference server.
MLServer runs with ``parallel_workers: 0`` (inference in the server process): its default
separate inference-pool process crashes at start with this Python ("There is no current
event loop in thread 'MainThread'" in mlserver/parallel/worker.py), and on one core the
in-process mode is its fastest anyway.
All servers are driven over KServe v2 ModelInfer (raw FP32 [N, 15] input); ours also over
their own packed Predict (naming xgb-v2, as the others do).
Anchors measured in the same run (issue 24): the native server's own health check at each
one-row concurrency (the grpc-go floor: a call that does no work) and the compiled
library's own rows/s on the 1,000-row batch, in process on core 1.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import numpy as np

from compiled_models import dataset
from proto.inference import grpc_predict_v2_pb2 as v2
from proto.volatility.v1 import predictor_pb2 as pb
from tools import procs
from tools.procs import cpu_seconds, free_port

ROOT = Path(__file__).resolve().parent.parent
GHZ = ROOT / ".tools" / "bin" / "ghz"
MLSERVER = ROOT / ".venv-mlserver" / "bin" / "mlserver"
PROTOS = ("proto/volatility/v1/predictor.proto", "proto/inference/grpc_predict_v2.proto")


def protoset(out: Path) -> Path:
    """Descriptors of our two contracts and of grpc.health.v1 (the floor), for ghz."""
    from google.protobuf import descriptor_pb2
    from grpc_health.v1 import health_pb2

    cmd = [sys.executable, "-m", "grpc_tools.protoc", "-I", str(ROOT)]
    subprocess.run([*cmd, "--include_imports", f"--descriptor_set_out={out}", *PROTOS], check=True)
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    health_pb2.DESCRIPTOR.CopyToProto(fds.file.add())
    out.write_bytes(fds.SerializeToString())
    return out


KERNEL_SCRIPT = """
import sys
import numpy as np
from compiled_models import runtime
from compiled_models.bench import time_call
x = np.load(sys.argv[1])
m = runtime.load(sys.argv[2])
print(len(x) / time_call(lambda: m.predict(x), 0.5, 7))
"""


def kernel_rows_per_s(tmp: Path, rows: int, model: str, pin: str | None) -> float:
    """The compiled library's own rows/s on the benchmark's ``rows``-row batch, through the
    runtime the Python server uses, one thread pinned like the servers (median of 7)."""
    x = tmp / f"rows-{rows}.npy"  # written by requests(): the rows the servers get
    cmd = [sys.executable, "-c", KERNEL_SCRIPT, str(x), str(ROOT / "compiled_models" / model)]
    if pin:
        cmd = ["taskset", "-c", pin, *cmd]
    return float(subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT).stdout)


def requests(tmp: Path, rows: int, model: str) -> dict[str, Path]:
    x = np.ascontiguousarray(dataset.build().test.X[:rows])
    np.save(tmp / f"rows-{rows}.npy", x)
    infer = v2.ModelInferRequest(
        model_name=model,
        inputs=[
            v2.ModelInferRequest.InferInputTensor(
                name="input-0", datatype="FP32", shape=list(x.shape)
            )
        ],
        raw_input_contents=[x.astype("<f4").tobytes()],
    )
    predict = pb.PredictRequest(  # by name: the model MLServer and ModelInfer serve
        model=model,
        packed=pb.PackedRows(float32_le=x.astype("<f4").tobytes(), num_features=x.shape[1]),
    )
    out = {"health": tmp / "health.json"}
    out["health"].write_text("{}")  # HealthCheckRequest(service=""): the server as a whole
    # (JSON: ghz divides by zero on an empty binary file, the empty message's encoding)
    for name, msg in (("infer", infer), ("predict", predict)):
        path = tmp / f"{name}-{rows}.bin"
        path.write_bytes(msg.SerializeToString())
        out[name] = path
    return out


def wait_grpc(address: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}")
        with grpc.insecure_channel(address) as ch:
            try:
                grpc.channel_ready_future(ch).result(timeout=1)
                stub = ch.unary_unary(
                    "/inference.GRPCInferenceService/ServerReady",
                    request_serializer=v2.ServerReadyRequest.SerializeToString,
                    response_deserializer=v2.ServerReadyResponse.FromString,
                )
                if stub(v2.ServerReadyRequest(), timeout=2).ready:
                    return
            except grpc.FutureTimeoutError:
                pass
            except grpc.RpcError:
                pass
        time.sleep(0.2)
    raise TimeoutError(f"{address} not ready")


def ghz(
    address: str, pset: Path, call: str, data: Path, conc: int, seconds: float, pin: str | None
) -> dict:
    cmd = [
        str(GHZ),
        "--insecure",
        "--protoset",
        str(pset),
        "--call",
        call,
        "--data-file" if data.suffix == ".json" else "--binary-file",
        str(data),
        "-c",
        str(conc),
        "-z",
        f"{seconds}s",
        "--format",
        "json",
        "--connections",
        str(min(conc, 4)),
        address,
    ]
    if pin:
        cmd = ["taskset", "-c", pin, *cmd]
    run = subprocess.run(cmd, capture_output=True)
    if run.returncode != 0:
        raise RuntimeError(f"ghz failed: {run.stderr.decode(errors='replace')[:500]}")
    out = run.stdout.decode()
    rep = json.loads(out)
    lat = {d["percentage"]: d["latency"] / 1e6 for d in rep.get("latencyDistribution") or []}
    codes = rep.get("statusCodeDistribution", {})
    return {
        "rps": rep["rps"],
        "p50": lat.get(50),
        "p95": lat.get(95),
        "p99": lat.get(99),
        "errors": errors(codes, conc),
        "count": rep["count"],
        "seconds": seconds,
        "codes": codes,
    }


def errors(codes: dict[str, int], conc: int) -> int:
    """Failed calls. When -z runs out ghz cancels the calls still in flight (at most one
    or two per concurrent worker), reported as Canceled or, when it closes the connection
    first, Unavailable: those are not server errors."""
    cut_off = min(2 * conc, codes.get("Canceled", 0) + codes.get("Unavailable", 0))
    return sum(v for k, v in codes.items() if k != "OK") - cut_off


def start_ours(
    impl: str, port: int, pin: str | None, tmp: Path, binary: Path | None = None
) -> subprocess.Popen:
    """``binary``: another build of the native server (an older commit's, for a before/after
    run), given the repository's models and model config explicitly."""
    args = ("--port", str(port), "--metrics-port", str(free_port()))
    log = tmp / f"{impl}-{port}.log"
    if binary is None:
        return procs.start_server(impl, *args, log=log, pin=pin)
    config = ("--models-dir", str(ROOT / "compiled_models"), "--model-config")
    cmd = [str(binary), *args, *config, str(ROOT / "config" / "model.toml")]
    if pin:
        cmd = ["taskset", "-c", pin, *cmd]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)


def start_mlserver(
    tmp: Path, port: int, pin: str | None, workers: int | None = 0
) -> subprocess.Popen:
    root = tmp / f"mlserver-{pin}-{workers}"
    (root / "xgb-v2").mkdir(parents=True)
    shutil.copy(ROOT / "compiled_models" / "xgb-v2" / "model.json", root / "xgb-v2")
    settings = {
        "host": "127.0.0.1",
        "grpc_port": port,
        "http_port": free_port(),
        "metrics_port": free_port(),
    }
    if workers is not None:
        settings["parallel_workers"] = workers
    (root / "settings.json").write_text(json.dumps(settings))
    (root / "xgb-v2" / "model-settings.json").write_text(
        json.dumps(
            {
                "name": "xgb-v2",
                "implementation": "mlserver_xgboost.XGBoostModel",
                "parameters": {"uri": "./model.json"},
            }
        )
    )
    cmd = [str(MLSERVER), "start", str(root)]
    if pin:
        cmd = ["taskset", "-c", pin, *cmd]
    return subprocess.Popen(
        cmd, cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--one-row-concurrency", default="1,8,32")
    p.add_argument("--batch-concurrency", default="1,4")
    p.add_argument("--only", help="run only the servers whose label contains this text")
    p.add_argument(
        "--native-binary",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="run each native row with this build too, labelled [NAME] (repeatable; "
        "e.g. before=/tmp/old-volspike-server after=server/native/volspike-server)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat every server's points this many times, alternating servers; "
        "report the median calls/s (and its latencies) per point",
    )
    args = p.parse_args()
    one_c = [int(c) for c in args.one_row_concurrency.split(",")]
    batch_c = [int(c) for c in args.batch_concurrency.split(",")]
    results: list[tuple] = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        pset = protoset(tmp / "protoset.bin")
        reqs = {1: requests(tmp, 1, "xgb-v2"), 1000: requests(tmp, 1000, "xgb-v2")}
        plan = [(1, c) for c in one_c] + [(1000, c) for c in batch_c]
        servers = [
            ("MLServer 1.7.1 (1 core)", "infer", lambda port: start_mlserver(tmp, port, "1"), "0"),
            (
                "ours native, health check: the grpc-go floor (1 core)",
                "health",
                lambda port: start_ours("native", port, "1", tmp),
                "0",
            ),
            (
                "ours native, ModelInfer (1 core)",
                "infer",
                lambda port: start_ours("native", port, "1", tmp),
                "0",
            ),
            (
                "ours native, Predict packed (1 core)",
                "predict",
                lambda port: start_ours("native", port, "1", tmp),
                "0",
            ),
            (
                "ours Python, Predict packed (1 core)",
                "predict",
                lambda port: start_ours("python", port, "1", tmp),
                "0",
            ),
            (
                "ours native, Predict packed (2 cores shared with ghz)",
                "predict",
                lambda port: start_ours("native", port, None, tmp),
                None,
            ),
        ]
        servers = with_binaries(servers, args.native_binary, tmp)
        if args.only:
            servers = [s for s in servers if args.only in s[0]]
        runs: dict[tuple, list[dict]] = {}
        for _ in range(args.rounds):
            for label, kind, start, ghz_pin in servers:
                port = free_port()
                proc = start(port)
                try:
                    wait_grpc(f"127.0.0.1:{port}", proc)
                    call = {
                        "infer": "inference.GRPCInferenceService.ModelInfer",
                        "predict": "volatility.v1.Predictor.Predict",
                        "health": "grpc.health.v1.Health.Check",
                    }[kind]
                    for rows, conc in plan:
                        if kind == "health" and rows > 1:
                            continue
                        data = reqs[rows][kind]
                        address = f"127.0.0.1:{port}"
                        ghz(address, pset, call, data, conc, 1.0, ghz_pin)  # warm-up
                        cpu0 = cpu_seconds(proc.pid)
                        r = ghz(address, pset, call, data, conc, args.seconds, ghz_pin)
                        r["server_cpu_s"] = cpu_seconds(proc.pid) - cpu0
                        runs.setdefault((label, rows, conc), []).append(r)
                        print(
                            f"{label:55s} rows {rows:5d} c {conc:3d}: {r['rps']:8.0f} calls/s "
                            f"p50 {r['p50']:.2f} p95 {r['p95']:.2f} p99 {r['p99']:.2f} ms "
                            f"errors {r['errors']}",
                            flush=True,
                        )
                finally:
                    stop(proc)
        for (label, rows, conc), rs in runs.items():  # the median round by calls/s
            results.append((label, rows, conc, sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]))
        kernel = kernel_rows_per_s(tmp, 1000, "xgb-v2", "1")
    print()
    head = "| server | rows/call | concurrency | calls/s | rows/s | p50 ms | p95 ms | p99 ms |"
    print(head + " errors |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for label, rows, conc, r in results:
        print(
            f"| {label} | {rows} | {conc} | {r['rps']:,.0f} | {r['rps'] * rows:,.0f} | "
            f"{r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | {r['errors']} |"
        )
    base = {(rows, conc): r for label, rows, conc, r in results if label.startswith("MLServer")}
    print()
    for label, rows, conc, r in results:
        if label.startswith("MLServer") or (rows, conc) not in base:
            continue
        b = base[(rows, conc)]
        target = 5.0 if rows == 1 else 3.0  # the service's throughput targets vs MLServer
        met = r["rps"] >= target * b["rps"] and (rows > 1 or r["p95"] < b["p95"])
        print(
            f"{label}, rows {rows}, c {conc}: {r['rps'] / b['rps']:.1f}x MLServer's (1 core) "
            f"throughput, p95 {r['p95']:.2f} vs {b['p95']:.2f} ms "
            f"[target {target:g}x{' + lower p95' if rows == 1 else ''}: "
            f"{'met' if met else 'NOT met'}]"
        )
    anchors(results, kernel)


def anchors(results: list[tuple], kernel: float) -> None:
    """Issue 24's transport goals, each against its anchor measured in this run: one-row
    Predict >= 90 % of the same server's health-check rate (the grpc-go floor) at the same
    concurrency; 1,000-row calls >= 90 % of the compiled library's own rows/s on one core."""
    print()
    floor = {c: r for label, rows, c, r in results if "health check" in label}
    for label, rows, conc, r in results:
        if not label.startswith("ours native, Predict packed (1 core)"):
            continue
        if rows == 1 and conc in floor:
            share = r["rps"] / floor[conc]["rps"]
            print(
                f"{label}, rows 1, c {conc}: {r['rps']:,.0f} calls/s = {share:.0%} of the health "
                f"check's {floor[conc]['rps']:,.0f} [target 90 %: "
                f"{'met' if share >= 0.9 else 'NOT met'}]"
            )
        elif rows > 1:
            share = r["rps"] * rows / kernel
            print(
                f"{label}, rows {rows}, c {conc}: {r['rps'] * rows:,.0f} rows/s = {share:.0%} "
                f"of the library's own {kernel:,.0f} rows/s on one core [target 90 %: "
                f"{'met' if share >= 0.9 else 'NOT met'}]"
            )
            # ghz on the other core may not keep the server busy (it decodes Predict's
            # repeated fields by reflection): the rows per second of server CPU say what
            # the server itself costs, whoever the client is.
            per_cpu = r["count"] * rows / r["server_cpu_s"] if r.get("server_cpu_s") else 0.0
            print(
                f"  per second of server CPU: {per_cpu:,.0f} rows = {per_cpu / kernel:.0%} of "
                f"the library's own (server busy {r['server_cpu_s'] / r['seconds']:.0%})"
            )


def with_binaries(servers: list[tuple], binaries: list[str], tmp: Path) -> list[tuple]:
    """Each native row once per ``NAME=PATH`` build (labelled [NAME]) instead of once."""
    if not binaries:
        return servers
    out = []
    for label, kind, start, ghz_pin in servers:
        if not label.startswith("ours native"):
            out.append((label, kind, start, ghz_pin))
            continue
        pin = "1" if "(1 core)" in label else None
        for spec in binaries:
            name, _, path = spec.partition("=")
            binary = Path(path).resolve()

            def start_binary(port, pin=pin, binary=binary):
                return start_ours("native", port, pin, tmp, binary)

            out.append((f"{label} [{name}]", kind, start_binary, ghz_pin))
    return out


if __name__ == "__main__":
    main()
