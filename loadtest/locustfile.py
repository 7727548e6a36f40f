"""Locust over gRPC: ``locust -f loadtest/locustfile.py --host 127.0.0.1:50051``.

``--host`` may name replicas (``127.0.0.1:50051,127.0.0.1:50052`` or ``dns:///name:port``):
each user's channel then sends every call to the next ready one (consumer/channel.py).

Scenarios (``--scenario``): ``one-row`` (named features, as a person or grpcurl sends),
``batch`` (packed float32 rows), ``mix`` (9 one-row calls to 1 batch call). Request data
are real feature rows: the artifact's reference sample of the real training ticks.
"""

from __future__ import annotations

import grpc.experimental.gevent as grpc_gevent

grpc_gevent.init_gevent()  # before any channel exists: grpc must cooperate with gevent

import contextlib  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import grpc  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from locust import User, constant, events, task  # noqa: E402

from consumer.channel import open_channel  # noqa: E402
from proto.volatility.v1 import predictor_pb2 as pb  # noqa: E402
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@events.init_command_line_parser.add_listener
def _args(parser) -> None:
    parser.add_argument("--scenario", choices=["one-row", "batch", "mix"], default="mix")
    parser.add_argument("--batch-rows", type=int, default=100)
    parser.add_argument(
        "--artifact-rows",
        default="xgb-v2",
        help="artifact whose reference sample supplies the request rows",
    )


class LocustInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Reports every call (time, size, failure) to Locust's statistics."""

    def __init__(self, environment) -> None:
        self.env = environment

    def intercept_unary_unary(self, continuation, client_call_details, request):
        t0 = time.perf_counter()
        call = continuation(client_call_details, request)  # failures come back, not raise
        ok = call.code() == grpc.StatusCode.OK
        length = call.result().ByteSize() if ok else 0
        exc = None if ok else call
        name = client_call_details.method.rsplit("/", 1)[-1]
        self.env.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=(time.perf_counter() - t0) * 1e3,
            response_length=length,
            exception=exc,
            context={},
        )
        return call


class PredictUser(User):
    wait_time = constant(0)  # closed loop: each user sends its next call at once

    def __init__(self, environment) -> None:
        super().__init__(environment)
        opts = environment.parsed_options
        self.scenario = opts.scenario if opts else "mix"
        batch_rows = opts.batch_rows if opts else 100
        artifact = opts.artifact_rows if opts else "xgb-v2"
        ref = pd.read_parquet(ROOT / "compiled_models" / artifact / "reference.parquet")
        names = list(ref.columns)
        x = ref.to_numpy(np.float32)
        self.one_rows = [
            pb.PredictRequest(
                rows=[pb.Row(features={n: float(v) for n, v in zip(names, r, strict=True)})]
            )
            for r in x[:200]
        ]
        self.batches = [
            pb.PredictRequest(
                packed=pb.PackedRows(
                    float32_le=np.ascontiguousarray(x[i : i + batch_rows]).tobytes(),
                    num_features=len(names),
                )
            )
            for i in range(0, len(x) - batch_rows, batch_rows)
        ]
        # one address, or replicas balanced per call (round_robin, health-checked)
        self.channel = grpc.intercept_channel(
            open_channel(self.host, []), LocustInterceptor(environment)
        )
        self.stub = pb_grpc.PredictorStub(self.channel)
        self.i = 0

    def on_stop(self) -> None:
        self.channel.close()

    def _call(self, req: pb.PredictRequest) -> None:
        with contextlib.suppress(grpc.RpcError):  # already reported by the interceptor
            self.stub.Predict(req, timeout=5)

    @task
    def predict(self) -> None:
        self.i += 1
        use_batch = self.scenario == "batch" or (self.scenario == "mix" and self.i % 10 == 0)
        pool = self.batches if use_batch else self.one_rows
        self._call(pool[self.i % len(pool)])
