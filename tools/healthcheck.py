"""Exit 0 if the gRPC server at ADDRESS says SERVING (compose healthcheck, operators).

python -m tools.healthcheck 127.0.0.1:50051
"""

from __future__ import annotations

import argparse
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("address", nargs="?", default="127.0.0.1:50051")
    p.add_argument("--timeout", type=float, default=2.0)
    args = p.parse_args()
    try:
        with grpc.insecure_channel(args.address) as ch:
            resp = health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(), timeout=args.timeout
            )
    except grpc.RpcError as err:
        sys.exit(f"{args.address}: {err.code().name}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    print(f"{args.address}: {status}")
    sys.exit(0 if status == "SERVING" else 1)


if __name__ == "__main__":
    main()
