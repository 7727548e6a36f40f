"""One trace shows consumer -> server: batch span -> Predict client span -> server span."""

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
        assert c.stop() == 0
        srv.stop()
    by_id = {s.span_id: (svc["service.name"], s) for svc, s in spans}
    servers = [
        s
        for svc, s in spans
        if svc["service.name"] == "volspike-server" and s.name == "/volatility.v1.Predictor/Predict"
    ]
    assert servers
    chains = 0
    for s in servers:
        client_svc, client = by_id.get(s.parent_span_id, (None, None))
        if client is None:
            continue
        assert client_svc == "volspike-consumer" and client.kind == client.SPAN_KIND_CLIENT
        batch_svc, batch = by_id[client.parent_span_id]
        assert batch_svc == "volspike-consumer" and batch.name == "consumer.batch"
        assert batch.trace_id == s.trace_id
        chains += 1
    assert chains >= 1
