"""A client cannot make the server write a log line per call: 1,000 calls each carrying an
oversized traceparent write at most a couple of lines (server/ratelimit.py). The Python
server's OpenTelemetry propagator warned on every such call.

Mutation (seen failing for the Python server): drop ``limit_client_triggered_logs()`` from
create_server (server/app.py): 1,000 lines."""

from __future__ import annotations

import grpc

from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess


def test_a_thousand_oversized_traceparents_write_a_line_or_two(tmp_path):
    srv = ServerProcess(tmp_path, impl="python").start()
    try:
        metadata = (("traceparent", "00-" + "a" * 600),)
        with grpc.insecure_channel(srv.address) as ch:
            stub = pb_grpc.PredictorStub(ch)
            for _ in range(1000):
                stub.ModelInfo(pb.ModelInfoRequest(), metadata=metadata, timeout=5)
    finally:
        assert srv.stop() == 0
    lines = [line for line in srv.log.read_text().splitlines() if "traceparent" in line]
    assert 1 <= len(lines) <= 2, lines
    assert "traceparent header exceeded the maximum length" in lines[0]
