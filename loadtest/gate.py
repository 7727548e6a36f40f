"""``make loadtest``: run Locust headless against a server and fail when an SLO is missed.

Targets ``--host`` if a server answers there; otherwise starts one (``--server native``, the
Go front end, or ``python``) for the run and stops it afterwards. ``--host`` also takes
replicas as the consumer's ``--server`` does (``127.0.0.1:50051,127.0.0.1:50052`` or
``dns:///name:port``): every call goes to the next ready replica (grpc ``round_robin`` with
health checking, consumer/channel.py), and a replica in the list that does not answer is
started for the run (on this machine only: 127.0.0.1, localhost, [::1]), each with its own
log (.run/loadtest-server-<port>.log). Reports (CSV, HTML) go to ``reports/``.

Exit codes: 0 every SLO met, 1 an SLO missed, 2 a malformed argument, 3 a listed replica
that could not be started (the end of its log is printed).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

from consumer import channel
from loadtest import slo
from tools import procs

SERVICE = "volatility.v1.Predictor"

ROOT = Path(__file__).resolve().parent.parent


LOCAL = ("127.0.0.1", "localhost", "[::1]")
COULD_NOT_START = 3
"""Exit code when a listed replica cannot be started (1 is a missed SLO, 2 a usage error)."""


def start_server(address: str, metrics_port: int, impl: str, workers: int) -> subprocess.Popen:
    """A server for ``address`` (a local one), its own log and metrics port."""
    host, port = channel.host_port(address, address)
    bare = host[1:-1] if host.startswith("[") else host
    log = ROOT / ".run" / f"loadtest-server-{port}.log"
    args = ["--host", bare, "--port", str(port), "--metrics-port", str(metrics_port)]
    if impl == "python":
        args += ["--workers", str(workers)]
    print(f"loadtest: starting a server on {address} (metrics :{metrics_port}, log {log})")
    proc = procs.start_server(impl, *args, log=log)
    try:
        procs.wait_serving(address, proc)
    except (RuntimeError, TimeoutError) as exc:
        proc.kill()
        tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
        print(f"loadtest: could not start a server on {address}: {exc}", file=sys.stderr)
        print("\n".join(f"  {line}" for line in tail), file=sys.stderr)
        sys.exit(COULD_NOT_START)
    return proc


def run_locust(args: argparse.Namespace, prefix: Path) -> slo.RunResult:
    cmd = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(ROOT / "loadtest" / "locustfile.py"),
        "--headless",
        "--host",
        args.host,
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        f"{args.duration}s",
        "--csv",
        str(prefix),
        "--html",
        f"{prefix}.html",
        "--only-summary",
        "--scenario",
        args.scenario,
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "0",
    ]
    if args.processes > 1:
        cmd += ["--processes", str(args.processes)]
    subprocess.run(
        cmd,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        timeout=args.duration + 120,
    )
    return read_stats(Path(f"{prefix}_stats.csv"))


def read_stats(path: Path) -> slo.RunResult:
    with path.open() as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    agg = rows["Aggregated"]
    p95 = agg["95%"]
    return slo.RunResult(
        requests=int(agg["Request Count"]),
        failures=int(agg["Failure Count"]),
        rps=float(agg["Requests/s"]),
        p95_ms=float(p95) if p95 not in ("", "N/A") else float("inf"),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--host", default="127.0.0.1:50051")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--spawn-rate", type=float, default=8)
    p.add_argument("--duration", type=int, default=30, help="seconds")
    p.add_argument("--scenario", default="mix", choices=["one-row", "batch", "mix"])
    p.add_argument("--processes", type=int, default=1, help="Locust worker processes")
    p.add_argument("--server", default="native", choices=procs.SERVER_IMPLS, help="if we start one")
    p.add_argument("--workers", type=int, default=1, help="Python server workers if we start one")
    p.add_argument("--metrics-port", type=int, default=8000)
    p.add_argument("--reports", type=Path, default=ROOT / "reports")
    p.add_argument("--slo-p95-ms", type=float)
    p.add_argument("--slo-min-rps", type=float)
    p.add_argument("--slo-max-error-ratio", type=float)
    args = p.parse_args()
    target = slo.predict_slo(
        p95_ms=args.slo_p95_ms, min_rps=args.slo_min_rps, max_error_ratio=args.slo_max_error_ratio
    )
    args.reports.mkdir(parents=True, exist_ok=True)
    try:
        tgt, balanced = channel.target(args.host)
    except channel.ServerAddressError as exc:
        p.error(f"--host: {exc}")  # exit 2: a usage error, not a missed SLO (1)
    replicas = [] if tgt.startswith("dns:") else [a.strip() for a in args.host.split(",")]
    servers = []
    down = [a for a in replicas if not procs.is_serving(a, SERVICE)]
    for address in down:
        if channel.host_port(address, address)[0] not in LOCAL:
            p.error(f"--host: no server answers on {address}, and one can be started only on "
                    f"this machine ({', '.join(LOCAL)})")  # fmt: skip
    try:
        for address in down:
            print(f"loadtest: no server answers on {address}; starting one for this run")
            # one server keeps --metrics-port; replicas get free ones (8001 is the consumer's)
            one = len(replicas) == 1
            metrics = args.metrics_port if one else procs.free_port(span=args.workers)
            servers.append(start_server(address, metrics, args.server, args.workers))
        result = run_locust(args, args.reports / "loadtest")
    finally:
        for server in servers:
            procs.stop(server)
    spread = f"{len(replicas) or 'DNS'} replicas, round_robin" if balanced else "one server"
    print(
        f"loadtest ({args.scenario}, {args.users} users, {args.duration} s, {spread}, "
        "tool: Locust): "
        f"{result.requests} calls, {result.rps:.1f} req/s, p95 {result.p95_ms:.1f} ms, "
        f"errors {result.error_ratio:.4%}"
    )
    print(
        f"SLO: p95 <= {target.p95_ms:g} ms, >= {target.min_rps:g} req/s, "
        f"error ratio <= {target.max_error_ratio:.4%}"
    )
    missed = slo.violations(result, target)
    for line in missed:
        print(f"SLO MISSED: {line}")
    if missed:
        sys.exit(1)
    print("all SLOs met")


if __name__ == "__main__":
    main()
