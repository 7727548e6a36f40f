"""Every server Predict span continues a consumer trace: batch span -> Predict client span ->
server span. Mutation (seen failing): the consumer not injecting traceparent into the call
metadata leaves every server span a root."""

from __future__ import annotations

import time

from tests.conftest import ServerProcess
from tests.pipeline.conftest import ConsumerProcess, Topics, read_topic, replay
from tests.server.test_tracing import otlp  # noqa: F401 - the real OTLP receiver fixture


def test_consumer_batch_span_parents_the_server_span(kafka, otlp, tmp_path):  # noqa: F811
    port, receiver = otlp
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_TRACES_SAMPLER": "parentbased_always_on",
    }
    srv = ServerProcess(tmp_path / "srv", env=env).start()
    topics = Topics.fresh(kafka, partitions=1)
    c = ConsumerProcess(kafka, srv.address, topics, tmp_path)
    c.extra_env = env
    c.start()
    try:
        n = replay(kafka, topics.ticks, "--source", "synthetic", "--count", "40000", "--keep-time")
        read_topic(kafka, topics.predictions, n)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with receiver.lock:
                spans = list(receiver.spans)
            batches = [
                s
                for svc, s in spans
                if s.name == "consumer.batch" and svc["service.name"] == "volspike-consumer"
            ]
            if batches and any(svc["service.name"] == "volspike-server" for svc, _ in spans):
                break
            time.sleep(0.2)
    finally:
        assert c.stop() == 0  # both flush their span processors on shutdown
        srv.stop()
    time.sleep(1.0)  # the last exports in flight
    with receiver.lock:
        spans = list(receiver.spans)
    by_id = {s.span_id: (svc["service.name"], s) for svc, s in spans}
    servers = [
        s
        for svc, s in spans
        if svc["service.name"] == "volspike-server" and s.name == "/volatility.v1.Predictor/Predict"
    ]
    assert len(servers) >= 5
    for s in servers:  # every one, not one good chain out of N
        client_svc, client = by_id[s.parent_span_id]
        assert client_svc == "volspike-consumer" and client.kind == client.SPAN_KIND_CLIENT
        batch_svc, batch = by_id[client.parent_span_id]
        assert batch_svc == "volspike-consumer" and batch.name == "consumer.batch"
        assert batch.trace_id == s.trace_id
