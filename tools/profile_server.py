"""Profile the native server under ghz, one call at a time beside the grpc-go floor.

The server is pinned to core 1 with ``--pprof``, ghz to core 0 (as ``make bench-server``);
for each call named, a warm-up, then ghz for ``--seconds`` while a CPU profile of all but
the first and last second is taken from /debug/pprof/profile. Prints calls/s, the server's
CPU per call (from /proc) and how busy it was, and writes ``<out>/<call>.pb.gz`` for
``go tool pprof``. Needs ghz (`make .tools/bin/ghz`) and the server (`make native`).

    python -m tools.profile_server --calls health,predict --concurrency 32 [--rows 1]
    cd server/native && go tool pprof -top /tmp/volspike-profile/predict.pb.gz
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import urllib.request
from pathlib import Path

from tools import bench_server as bench
from tools import procs
from tools.procs import cpu_seconds, free_port

CALLS = {
    "health": "grpc.health.v1.Health/Check",
    "predict": "volatility.v1.Predictor/Predict",
    "infer": "inference.GRPCInferenceService/ModelInfer",
}


def fetch(url: str, into: dict[str, bytes]) -> None:
    into["profile"] = urllib.request.urlopen(url).read()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--calls", default="health,predict", help=f"of {', '.join(CALLS)}")
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rows", type=int, default=1, help="rows per Predict/ModelInfer call")
    p.add_argument("--model", default="xgb-v2")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "volspike-profile")
    p.add_argument("--binary", default=str(procs.NATIVE_SERVER))
    a = p.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        pset = bench.protoset(tmp / "protoset.pb")
        data = bench.requests(tmp, a.rows, a.model)
        port, mport = free_port(), free_port()
        cmd = ["taskset", "-c", "1", a.binary, "--port", str(port), "--metrics-port", str(mport)]
        log = (a.out / "server.log").open("wb")
        server = subprocess.Popen(
            [*cmd, "--pprof"], cwd=procs.ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        target = f"127.0.0.1:{port}"
        try:
            bench.wait_grpc(target, server)
            for name in a.calls.split(","):
                req = data["health" if name == "health" else name]
                bench.ghz(target, pset, CALLS[name], req, a.concurrency, 2, "0")  # warm-up
                url = f"http://127.0.0.1:{mport}/debug/pprof/profile?seconds={a.seconds - 2:.0f}"
                prof: dict[str, bytes] = {}
                grab = threading.Thread(target=fetch, args=(url, prof))
                cpu0 = cpu_seconds(server.pid)
                grab.start()
                r = bench.ghz(target, pset, CALLS[name], req, a.concurrency, a.seconds, "0")
                cpu = cpu_seconds(server.pid) - cpu0
                grab.join()
                (a.out / f"{name}.pb.gz").write_bytes(prof["profile"])
                print(
                    f"{name}: {r['rps']:,.0f} calls/s at c={a.concurrency}, rows {a.rows}, "
                    f"server CPU {cpu / r['count'] * 1e6:.1f} us/call, "
                    f"busy {cpu / a.seconds:.0%}; profile {a.out / name}.pb.gz",
                    flush=True,
                )
        finally:
            procs.stop(server)


if __name__ == "__main__":
    main()
