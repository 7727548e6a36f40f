"""Spans reach a real OTLP/gRPC receiver and continue the caller's W3C trace.

One receiver and fresh random trace/parent ids per test: with a shared receiver and a
constant id, the native run's spans satisfied the Python run. Mutation (seen failing for
the Python server): drop ``extract(...)`` of the caller's context in server/rpc.py."""

from __future__ import annotations

import secrets
import threading
import time
from concurrent import futures

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as ts
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as ts_grpc

from market.features import FEATURE_NAMES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess, free_port


class Receiver(ts_grpc.TraceServiceServicer):
    def __init__(self) -> None:
        self.spans: list = []
        self.lock = threading.Lock()

    def Export(self, request, context):
        with self.lock:
            for rs in request.resource_spans:
                service = {a.key: a.value.string_value for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    self.spans.extend((service, s) for s in ss.spans)
        return ts.ExportTraceServiceResponse()


@pytest.fixture
def otlp():
    port = free_port()
    receiver = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    ts_grpc.add_TraceServiceServicer_to_server(receiver, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield port, receiver
    server.stop(0)


def test_spans_continue_the_callers_trace(otlp, tmp_path, impl):
    port, receiver = otlp
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_TRACES_SAMPLER": "",  # the production default: continue sampled callers
    }
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    srv = ServerProcess(tmp_path, env=env, impl=impl).start()
    try:
        with grpc.insecure_channel(srv.address) as ch:
            health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
            row = pb.Row(features=dict.fromkeys(FEATURE_NAMES, 0.001))
            md = (("traceparent", f"00-{trace_id}-{parent_id}-01"),)
            pb_grpc.PredictorStub(ch).Predict(pb.PredictRequest(rows=[row, row]), metadata=md)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with receiver.lock:
                ours = [s for _, s in receiver.spans if s.trace_id.hex() == trace_id]
            if len(ours) >= 4:
                break
            time.sleep(0.1)
    finally:
        assert srv.stop() == 0
    by_name = {s.name: s for s in ours}
    root = by_name["/volatility.v1.Predictor/Predict"]
    assert root.parent_span_id.hex() == parent_id
    assert root.kind == root.SPAN_KIND_SERVER
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["volspike.artifact"].string_value == "xgb-v2"
    assert attrs["volspike.rows"].int_value == 2
    for child in ("decode", "predict", "encode"):
        assert by_name[child].parent_span_id == root.span_id
    services = {svc["service.name"] for svc, _ in receiver.spans}
    assert services == {"volspike-server"}
    assert not [s for _, s in receiver.spans if "Health" in s.name]
