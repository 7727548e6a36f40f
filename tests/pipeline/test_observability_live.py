"""The observability stack, live: real Kafka, the native server, the consumer, Prometheus 3
(the pinned build, scraping every second with the project's config and rules) and Jaeger v2
as the trace store. Every dashboard query and every recording rule returns data, an exemplar
leads to its whole trace (consumer batch -> client Predict -> server span), a search by
service, operation and span tags (the stand-in for Tempo's TraceQL) finds that chain, and a
failed rollback fires the model-load alert.

Proven by breaking the code: a rule selecting le="30" (not "30.0") leaves the freshness
recording rules empty; dropping `fallback_scrape_protocol` or the pre-initialised
`result="failed"` counter keeps VolspikeModelLoadFailed silent (increase() of a series that
appears at 1 is 0)."""

from __future__ import annotations

import json
import time

import pytest
import yaml
from confluent_kafka import Producer

from observability import dashboard
from observability.generate import RULES_FILE
from server.rollback import set_artifact
from tests.conftest import ServerProcess
from tests.pipeline.conftest import ConsumerProcess, Topics, replay
from tests.server.test_hostile import TRUNCATIONS, models_with
from tools.obs_stack import Jaeger, Prometheus


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory):
    work = tmp_path_factory.mktemp("obs")
    since = time.time()
    jaeger = Jaeger(work / "jaeger").start()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": jaeger.otlp_endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
    }
    models = models_with(work, ("xgb-broken", {"lib": TRUNCATIONS["half"]}))
    srv = ServerProcess(
        work / "server", env={**otel, "VOLSPIKE_MODELS_DIR": str(models)}, servable=()
    ).start()
    topics = Topics.fresh(kafka)
    consumer = ConsumerProcess(
        kafka,
        srv.address,
        topics,
        work / "consumer",
        extra_env={
            **otel,
            "OTEL_TRACES_SAMPLER": "always_on",
            "VOLSPIKE_CONSUMER_LIVE_SAMPLE_FLUSH_S": "1",
            "VOLSPIKE_CONSUMER_DRIFT_REPORT_METRICS": str(work / "drift" / "metrics.json"),
        },
    ).start()
    prom = Prometheus(work / "prom").start(
        [f"127.0.0.1:{srv.metrics_port}"], [f"127.0.0.1:{consumer.metrics_port}"]
    )
    try:
        p = Producer({"bootstrap.servers": kafka})
        for bad in (b"not json", b'{"symbol": "X"}'):
            p.produce(topics.ticks, bad, key=b"X")
        p.flush(10)
        # 320 s of back-dated history first (sent at once): symbols are past their 300 s
        # warm-up when the live part (~20 s at 300 ticks/s) starts, so ticks are scored
        args = ["--count", "125000", "--rate", "300", "--history-seconds", "320"]
        replay(kafka, topics.ticks, "--source", "synthetic", *args)
        time.sleep(5)  # a few more scrapes after the last answer
        yield {
            "prom": prom,
            "jaeger": jaeger,
            "server": srv,
            "consumer": consumer,
            "work": work,
            "kafka": kafka,
            "topics": topics,
            "since": since,
        }
    finally:
        consumer.stop()
        srv.stop()
        prom.stop()
        jaeger.stop()


def has_data(result: list) -> bool:
    return any(
        v != "NaN" for series in result for _, v in series.get("values", [series.get("value")])
    )


def test_every_dashboard_query_returns_data(stack):
    prom: Prometheus = stack["prom"]
    end = time.time()
    empty = []
    for spec in dashboard.panels():
        for expr, _legend in spec.queries:
            if not has_data(prom.query_range(expr, end - 120, end, 2)):
                empty.append(f"{spec.title}: {expr}")
    assert not empty, "\n".join(empty)


def test_every_recording_rule_returns_data_and_every_rule_is_healthy(stack):
    prom: Prometheus = stack["prom"]
    groups = yaml.safe_load(RULES_FILE.read_text())["groups"]
    records = [r for g in groups for r in g["rules"] if "record" in r]
    empty = [r["record"] for r in records if not has_data(prom.query(r["expr"]))]
    assert not empty, empty
    loaded = prom.api("rules")["groups"]
    bad = [
        (r["name"], r.get("lastError")) for g in loaded for r in g["rules"] if r["health"] != "ok"
    ]
    assert not bad, bad
    assert sum(len(g["rules"]) for g in loaded) == sum(len(g["rules"]) for g in groups)


def test_an_exemplar_leads_to_the_whole_trace_in_jaeger(stack):
    prom, jaeger = stack["prom"], stack["jaeger"]
    end = time.time()
    found = prom.api(
        "query_exemplars",
        query='volspike_rpc_duration_seconds_bucket{method="Predict"}',
        start=end - 300,
        end=end,
    )
    ids = [e["labels"]["trace_id"] for s in found for e in s["exemplars"]]
    assert ids, "no exemplar on the Predict latency histogram"
    deadline = time.monotonic() + 30
    trace = None
    while trace is None and time.monotonic() < deadline:
        trace = jaeger.trace(ids[-1])
        time.sleep(0.5)
    assert trace is not None, f"trace {ids[-1]} never reached Jaeger"
    spans = {s["spanID"]: s for s in trace["spans"]}
    service = {k: p["serviceName"] for k, p in trace["processes"].items()}

    def parent(span):
        refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
        return spans.get(refs[0]["spanID"]) if refs else None

    server = [
        s
        for s in spans.values()
        if s["operationName"] == "/volatility.v1.Predictor/Predict"
        and service[s["processID"]] == "volspike-server"
    ]
    assert server, json.dumps(trace)[:2000]
    client = parent(server[0])
    assert client is not None and service[client["processID"]] == "volspike-consumer"
    assert client["operationName"] == "/volatility.v1.Predictor/Predict"
    batch = parent(client)
    assert batch is not None and batch["operationName"] == "consumer.batch"


PREDICT = "/volatility.v1.Predictor/Predict"


def span_tags(span: dict) -> dict:
    return {t["key"]: t["value"] for t in span["tags"]}


def test_a_tag_search_finds_the_consumer_to_server_trace_in_jaeger(stack):
    """What TraceQL's `{ resource.service.name = "volspike-server" && name =
    "/volatility.v1.Predictor/Predict" && span.volspike.artifact = "xgb-v2" }` asks Tempo (not
    run here: see docs/observability.md), asked of Jaeger's search API: service, operation and
    span tags, all matched on one span. Every trace found holds that server span, with the tag,
    as the child of the consumer's client Predict span under its consumer.batch span; a search
    by the found span's row count (an int attribute) finds its trace again; a value the server
    never sets finds nothing (the tags filter). Seen failing: searching "xgb-v9" finds no
    trace; the consumer without a propagator (OTEL_PROPAGATORS=none) leaves server spans roots."""
    jaeger: Jaeger = stack["jaeger"]
    query = {"service": "volspike-server", "operation": PREDICT, "start": stack["since"]}
    deadline = time.monotonic() + 30
    found: list[dict] = []
    while not found and time.monotonic() < deadline:
        found = jaeger.search(**query, tags={"volspike.artifact": "xgb-v2"})
        time.sleep(0.5)
    assert found, "no trace has a volspike-server Predict span tagged volspike.artifact=xgb-v2"
    rows = set()
    for trace in found:
        spans = {s["spanID"]: s for s in trace["spans"]}
        service = {k: p["serviceName"] for k, p in trace["processes"].items()}

        def parent(span, spans=spans):
            refs = [r for r in span["references"] if r["refType"] == "CHILD_OF"]
            return spans.get(refs[0]["spanID"]) if refs else None

        matched = [
            s
            for s in spans.values()
            if s["operationName"] == PREDICT
            and service[s["processID"]] == "volspike-server"
            and span_tags(s).get("volspike.artifact") == "xgb-v2"
        ]
        assert matched, json.dumps(trace)[:2000]
        for server in matched:
            assert span_tags(server)["span.kind"] == "server"
            rows.add((trace["traceID"], span_tags(server)["volspike.rows"]))
            client = parent(server)
            assert client is not None, f"server span {server['spanID']} is a root"
            assert service[client["processID"]] == "volspike-consumer"
            assert client["operationName"] == PREDICT
            assert span_tags(client)["span.kind"] == "client"
            batch = parent(client)
            assert batch is not None and batch["operationName"] == "consumer.batch"
            assert service[batch["processID"]] == "volspike-consumer"
            assert parent(batch) is None  # the chain's root
    trace_id, n = min(rows)
    assert n > 0
    again = jaeger.search(**query, tags={"volspike.artifact": "xgb-v2", "volspike.rows": str(n)})
    assert trace_id in {t["traceID"] for t in again}
    assert not jaeger.search(**query, tags={"volspike.artifact": "xgb-v1"})


def test_a_failed_rollback_fires_the_model_load_alert(stack):
    prom, srv = stack["prom"], stack["server"]
    firing = [a for a in prom.api("alerts")["alerts"] if a["state"] == "firing"]
    assert not [a for a in firing if a["labels"]["alertname"] == "VolspikeModelLoadFailed"]
    set_artifact(srv.model_config, "xgb-broken")  # what `make rollback` does, then SIGHUP
    srv.proc.send_signal(1)
    deadline = time.monotonic() + 30
    alert = None
    while alert is None and time.monotonic() < deadline:
        alerts = prom.api("alerts")["alerts"]
        alert = next(
            (
                a
                for a in alerts
                if a["labels"]["alertname"] == "VolspikeModelLoadFailed" and a["state"] == "firing"
            ),
            None,
        )
        time.sleep(0.5)
    assert alert is not None, prom.api("alerts")
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#volspikemodelloadfailed"
    assert srv.health() == "SERVING"  # the old model keeps serving
    # the dashboard marks the failure, and no model switch (the old artifact still serves)
    notes = {a.name: a.expr for a in dashboard.annotation_specs()}
    assert has_data(prom.query(notes["Model load failed"]))
    assert prom.query(notes["Model switch"]) == []


def test_every_runbook_query_runs(stack):
    from tests.test_observability import runbook_promql

    prom: Prometheus = stack["prom"]
    queries = runbook_promql()
    assert len(queries) >= 15
    for q in queries:
        prom.query(q)  # raises on a PromQL error


def test_make_drift_on_the_live_sample_reaches_prometheus(stack):
    """The consumer's live sample (synthetic crypto ticks) against xgb-v2's ES reference:
    the report finds the drift and exits 1; its summary, exported by the consumer, reaches
    Prometheus with the report's time (what VolspikeDriftReportStale watches)."""
    import subprocess

    from tests.conftest import ROOT
    from tests.test_drift import DRIFT_PY

    prom, consumer, work = stack["prom"], stack["consumer"], stack["work"]
    samples = list((consumer.workdir / "live-sample").glob("*.npz"))
    assert samples, "the consumer wrote no live sample"
    out = subprocess.run(
        [str(DRIFT_PY), "-m", "drift.report", "--artifact", "xgb-v2", "--models-dir",
         str(work / "models"), "--live", str(samples[0].parent), "--out", str(work / "drift")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    assert "spread_bps" in out.stdout and "DRIFT" in out.stdout
    deadline = time.time() + 20
    while time.time() < deadline:
        got = prom.query("volspike_drift_report_drifted_share")
        if got:
            break
        time.sleep(0.5)
    assert got and float(got[0]["value"][1]) > 0.5, got
    age = prom.query("time() - max(volspike_drift_report_timestamp_seconds)")
    assert 0 <= float(age[0]["value"][1]) < 60


def alert_state(prom: Prometheus, name: str) -> str:
    states = [a["state"] for a in prom.api("alerts")["alerts"] if a["labels"]["alertname"] == name]
    return states[0] if states else "inactive"


def test_a_dead_server_burns_the_availability_budget_until_it_is_back(stack):
    """Runs last: it stops the module's server. Before, the availability SLI was computed from
    the server's own counters only, and a dead server counts nothing: it stayed 0 through a
    7-minute outage. Now the consumer's unanswered Predict attempts count, and so does the
    time no server target is up while ticks wait: the fast-burn alert fires while the native
    server is down under traffic; the Python server that replaces it answers (no unanswered
    attempt, down share 0), then dies too and the down signal and unanswered attempts return.
    The alert itself stays firing for a while after recovery here: this Prometheus has only
    minutes of history, so its 6 h window sees the outage as much as its 30 m one (with a
    day of history a short outage burns the 1 h/5 m pair only). The burn alerts have no
    `for`: they go inactive -> firing. (Mutation: the SLI without the consumer's term stays
    silent and this fails.)"""
    import threading

    prom, srv, consumer = stack["prom"], stack["server"], stack["consumer"]
    kafka, topics = stack["kafka"], stack["topics"]
    name = "VolspikeAvailabilityBudgetBurnFast"
    assert alert_state(prom, name) == "inactive"
    stop = threading.Event()
    codes = "UNAVAILABLE|DEADLINE_EXCEEDED"
    unanswered = f'sum(rate(volspike_consumer_predict_calls_total{{code=~"{codes}"}}[5s]))'

    def traffic() -> None:  # live ticks the whole time, 10 s of them per replay
        while not stop.is_set():
            replay(kafka, topics.ticks, "--source", "synthetic", "--count", "3000", "--rate", "300")

    def wait(expr: str, ok, limit: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < limit:
            got = prom.query(expr)
            if got and ok(float(got[0]["value"][1])):
                return time.monotonic() - start
            time.sleep(1)
        raise AssertionError(f"{expr} never as expected in {limit} s: {prom.query(expr)}")

    feeder = threading.Thread(target=traffic)
    feeder.start()
    current, timings = srv, []
    try:
        for i, impl in enumerate(("python", "python")):  # native dies, then python dies
            time.sleep(3)
            rc = current.stop()
            assert rc == 0 or i == 1, rc  # the native server exits 0 on SIGTERM
            down = wait("volspike_slo:server_down_while_waiting", lambda v: v == 1.0, 60)
            if i == 0:
                fired = wait(f'ALERTS{{alertname="{name}",alertstate="firing"}}', bool, 120)
                timings.append(f"fired {fired:.0f} s after the native server stopped")
            assert wait(unanswered, lambda v: v > 0, 30) >= 0
            assert consumer.metric('volspike_consumer_predict_calls_total{code="UNAVAILABLE"}') > 0
            current = ServerProcess(
                srv.workdir / f"again{i}", env=srv.env, servable=(), port=srv.port,
                metrics_port=srv.metrics_port, impl=impl,
            ).start()  # fmt: skip
            back = wait("volspike_slo:server_down_while_waiting", lambda v: v == 0.0, 60)
            calm = wait(unanswered, lambda v: v == 0.0, 120)
            timings.append(f"{'native' if i == 0 else 'python'} down seen in {down:.0f} s, "
                           f"answers back {max(back, calm):.0f} s after the restart")  # fmt: skip
        assert prom.query("volspike_slo:availability_errors:ratio_rate5m")
        print("; ".join(timings))
    finally:
        stop.set()
        feeder.join(120)
        if current is not srv:
            current.stop()
