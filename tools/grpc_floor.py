"""A bare gRPC health server, to measure what Python gRPC itself can answer per core:

    taskset -c 1 .venv/bin/python -m tools.grpc_floor --mode sync --port 50661 &
    taskset -c 0 .tools/bin/ghz --insecure --protoset <health protoset> \\
        --call grpc.health.v1.Health.Check --binary-file <request> -c 8 -z 3s 127.0.0.1:50661

(``tools/bench_server.py`` writes the protoset and request.) ``--mode aio`` serves the same
with ``grpc.aio``. This is how the server's transport was chosen (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

SERVICE = "volatility.v1.Predictor"


def sync_server(port: int, threads: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(threads))
    servicer = health.HealthServicer()
    servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


async def aio_server(port: int) -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    await servicer.set(SERVICE, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--mode", choices=["sync", "aio"], default="sync")
    p.add_argument("--port", type=int, default=50661)
    p.add_argument("--threads", type=int, default=8)
    a = p.parse_args()
    if a.mode == "sync":
        sync_server(a.port, a.threads)
    else:
        asyncio.run(aio_server(a.port))


if __name__ == "__main__":
    main()
