"""Does scraping cost the hot path? One-row Predict throughput of the native server with
Prometheus scraping it every second vs not scraping it, alternating in one run.

The server is pinned to core 1, ghz and Prometheus to core 0. Prometheus runs throughout;
scraping is switched on and off by rewriting its file_sd targets (refreshed every second),
so the only difference between the two arms is the scrape itself.

    python -m tools.bench_scrape [--rounds 6] [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from tools import procs
from tools.bench_server import GHZ, ghz, protoset, requests, wait_grpc
from tools.obs_stack import Prometheus


def set_targets(prom: Prometheus, targets: list[str]) -> None:
    path = prom.workdir / "prometheus" / "targets" / "server.json"
    path.write_text(json.dumps([{"targets": targets}] if targets else []))
    time.sleep(3)  # file_sd refresh (1 s) and the first scrape


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--concurrency", type=int, default=8)
    args = p.parse_args()
    if not GHZ.exists():
        raise SystemExit(f"{GHZ} missing: make .tools/bin/ghz")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scrape-"))
    port, mport = procs.free_port(), procs.free_port()
    server = procs.start_server(
        "native", "--port", str(port), "--metrics-port", str(mport), log=tmp / "server.log", pin="1"
    )
    prom = None
    try:
        wait_grpc(f"127.0.0.1:{port}", server)
        prom = Prometheus(tmp / "prom", pin="0").start([], [])
        pset = protoset(tmp / "protoset.bin")
        data = requests(tmp, 1, "xgb-v2")["predict"]
        call = "volatility.v1.Predictor.Predict"
        target = f"127.0.0.1:{mport}"
        ghz(f"127.0.0.1:{port}", pset, call, data, args.concurrency, 2.0, "0")  # warm-up
        rps: dict[str, list[float]] = {"off": [], "on": []}
        for r in range(args.rounds):
            for arm in ("off", "on") if r % 2 == 0 else ("on", "off"):
                set_targets(prom, [target] if arm == "on" else [])
                res = ghz(
                    f"127.0.0.1:{port}", pset, call, data, args.concurrency, args.seconds, "0"
                )
                rps[arm].append(res["rps"])
                print(
                    f"round {r} scrape {arm:>3}: {res['rps']:9,.0f} calls/s p95 {res['p95']:.2f} ms"
                )
        scraped = prom.query(f'count_over_time(up{{instance="{target}"}}[15m])')
        assert scraped, "Prometheus never scraped the server"
        scrapes = int(float(scraped[0]["value"][1]))
        off, on = statistics.median(rps["off"]), statistics.median(rps["on"])
        print(
            f"median one-row Predict calls/s (c={args.concurrency}): no scrape {off:,.0f}, "
            f"scraped every 1 s {on:,.0f}: {100 * (on - off) / off:+.1f} % "
            f"({scrapes} scrapes)"
        )
    finally:
        if prom is not None:
            prom.stop()
        procs.stop(server)


if __name__ == "__main__":
    main()
