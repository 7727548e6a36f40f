"""The runbook walked during real failures: every step of docs/runbook.md (tests/runbook.py
reads them mechanically: fenced `promql`, `sh` and `log` lines, and the PromQL of **Verify
recovery.**) is run, with this test's addresses, during the failure its section diagnoses, and
must show what the section says. Induced on one live stack (real Kafka, the native server as
`make serve` runs it, the consumer, Prometheus 3 with the project's config and rules at 1 s):

- errors burn: a caller named risk-desk-7 sends rows of the wrong width;
- model load failed: `make rollback` to an artifact whose library was tampered with (refused),
  and a second server started on it (NOT_SERVING);
- hung server: SIGSTOP under a steady stream, so the consumer stalls behind it with a backlog;
- dead server: the runbook's own SIGTERM (ignored while stopped) then SIGKILL;
- recovery: the runbook's `make serve`, after which the stream is answered again.

A wrong metric name or label leaves a query without the series it must show, a curl without
`--max-time` hangs past its bound on the hung server, a wrong grpcurl method or make target
fails, a log line the servers do not write is not found. Sections without such a failure are
listed in NOT_WALKED with the reason (their PromQL still runs: test_observability_live.py).
Every wait is bounded; the whole walk takes ~1.5 minutes here."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from consumer.metrics import ERROR_TYPES
from observability import rules
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import _STARTED, ROOT, ServerProcess
from tests.pipeline.conftest import ConsumerProcess, Topics
from tests.runbook import Step, alert_sections, all_steps, log_pattern
from tests.server.test_differential import with_tampered_v1
from tools.obs_stack import Prometheus

RATE = 60  # ticks/s of the steady stream


# --- what each step must show, and when ---------------------------------------------------
@dataclass
class Ctx:
    """The live stack; ``target`` is the server the phase's steps are about."""

    prom: Prometheus
    server: ServerProcess
    other: ServerProcess | None
    consumer: ConsumerProcess
    env: dict
    target: ServerProcess | None = None
    background: list[subprocess.Popen] = field(default_factory=list)
    timings: list[str] = field(default_factory=list)

    @property
    def shell_env(self) -> dict:
        return {**os.environ, "PYTHONPATH": str(ROOT), **self.env}

    @property
    def srv(self) -> ServerProcess:
        return self.target or self.server

    def instance(self, who: str) -> str:
        port = {"server": self.srv.metrics_port, "consumer": self.consumer.metrics_port}[who]
        return f"127.0.0.1:{port}"

    def local(self, text: str) -> str:
        """A runbook line with this stack's addresses and files for the defaults."""
        srv = self.srv
        subs = {
            "127.0.0.1:50051": srv.address,
            "127.0.0.1:8000": f"127.0.0.1:{srv.metrics_port}",
            "127.0.0.1:8001": f"127.0.0.1:{self.consumer.metrics_port}",
            "127.0.0.1:9090": f"127.0.0.1:{self.prom.port}",
            ".run/server.pid": str(srv.workdir / "server.pid"),
            ".run/model.toml": str(srv.model_config),
        }
        text = re.sub("|".join(map(re.escape, subs)), lambda m: subs[m.group(0)], text)
        if text.startswith("make "):  # the test's ports; never rebuild models or the binary
            text = text.replace("make ", "make -s -o models -o native ", 1) + (
                f" GRPC_PORT={srv.port} METRICS_PORT={srv.metrics_port} PY={sys.executable}"
                f" MODEL_CONFIG={srv.model_config} PID_FILE={srv.workdir / 'server.pid'}"
            )
        return text


Check = Callable[[Ctx, object], str | None]  # None: the step shows what it must; else why not


def resolve(ctx: Ctx, where: dict) -> dict:
    """``@server``/``@consumer``: the phase's server's / the consumer's scrape instance."""
    return {k: ctx.instance(v[1:]) if v.startswith("@") else v for k, v in where.items()}


def series(ctx: Ctx, result, where: dict) -> list[float]:
    where = resolve(ctx, where)
    return [
        float(s["value"][1])
        for s in result
        if all(s["metric"].get(k) == v for k, v in where.items())
    ]


def above_0(**where: str) -> Check:
    """A series with these labels (``@server``: the phase's server instance) above 0."""

    def check(ctx, result):
        got = series(ctx, result, where)
        if any(v > 0 for v in got):
            return None
        return f"no series {resolve(ctx, where)} above 0 in {result}"

    return check


def equals(value: float, **where: str) -> Check:
    def check(ctx, result):
        got = series(ctx, result, where)
        if got and all(v == value for v in got):
            return None
        return f"{resolve(ctx, where)} is not {value}: {got or result}"

    return check


def absent(**where: str) -> Check:
    def check(ctx, result):
        got = series(ctx, result, where)
        return None if not got else f"{resolve(ctx, where)} is present: {got}"

    return check


class Moves:
    """A query's value seen during the failure (``seen``), then required to have moved the
    right way once the runbook's mitigation ran (``rose``/``fell``): a rate over a minute
    still holding the answers from before a short stall is above 0 either way."""

    def __init__(self) -> None:
        self.before: float | None = None

    @staticmethod
    def total(result) -> float:
        return sum(float(s["value"][1]) for s in result if s["value"][1] != "NaN")

    def seen(self, ctx, result):
        self.before = self.total(result) if result else None
        return None if result else f"no series: {result}"

    def _moved(self, result, up: bool) -> str | None:
        now = self.total(result)
        if self.before is None or (now > self.before if up else now < self.before):
            return None
        return f"{self.before} during the failure, {now} after the mitigation"

    def rose(self, ctx, result):
        return self._moved(result, up=True)

    def fell(self, ctx, result):
        return self._moved(result, up=False)


ANSWERS, LAG = Moves(), Moves()


def every_error_type_at_start(ctx, result):
    types = {s["metric"].get("type") for s in result}
    return None if set(ERROR_TYPES) <= types else f"error types {types} (want {ERROR_TYPES})"


def both(*checks: Check) -> Check:
    def check(ctx, result):
        return next((w for c in checks if (w := c(ctx, result)) is not None), None)

    return check


def printed(*texts: str, quick: float = 60.0, rc: int | None = 0) -> Check:
    """A command that exits with ``rc`` within ``quick`` seconds, printing every text."""

    def check(ctx, done):
        out, took = done
        text = out.stdout + out.stderr
        if rc is not None and out.returncode != rc:
            return f"exit {out.returncode}, not {rc}: {text[-1500:]}"
        if took > quick:
            return f"took {took:.1f} s (at most {quick})"
        missing = [t for t in texts if t not in text]
        return f"printed no {missing}: {text[-1500:]}" if missing else None

    return check


def printed_nothing(quick: float) -> Check:
    def check(ctx, done):
        out, took = done
        if out.stdout.strip():
            return f"printed {out.stdout[:300]!r}"
        return None if took <= quick else f"took {took:.1f} s (at most {quick})"

    return check


def target_down(error: str) -> Check:
    def check(ctx, done):
        out, _ = done
        targets = json.loads(out.stdout)["data"]["activeTargets"]
        url = f"http://{ctx.instance('server')}/metrics"
        mine = [t for t in targets if t["scrapeUrl"] == url]
        if not mine or mine[0]["health"] != "down" or error not in mine[0]["lastError"]:
            return f"{url} is not down with {error!r}: {mine or targets}"
        return None

    return check


def process_still_there(ctx, done):
    time.sleep(1.5)  # a running server would drain and exit well within this
    return None if ctx.server.proc.poll() is None else "the stopped server exited on SIGTERM"


def process_gone(ctx, done):
    try:
        ctx.server.proc.wait(5)
    except subprocess.TimeoutExpired:
        return "the server is still there after SIGKILL"
    return None


def serving_again(ctx, done):
    proc, _ = done
    ctx.background.append(proc)
    deadline, last = time.monotonic() + 30, None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if (last := ctx.server.health()) == "SERVING":
                return None
        except grpc.RpcError as err:
            last = err.code()
        time.sleep(0.2)
    log = (ctx.server.workdir / "make-serve.log").read_text(errors="replace")
    return f"make serve did not serve (last {last}): {log[-1500:]}"


def found(ctx, pattern: re.Pattern) -> str | None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if pattern.search(ctx.srv.log.read_text(errors="replace")):
            return None
        time.sleep(0.2)
    return f"no log line matches {pattern.pattern!r}"


RUNS_ONLY = "runs only"
# (section, kind, index) -> [(phase, check)], or (RUNS_ONLY, why no phase here shows it)
EXPECT: dict[tuple[str, str, int], list[tuple[str, Check]] | tuple[str, str]] = {
    ("VolspikeErrorsBudgetBurnFast", "promql", 0): [
        ("errors", above_0(code="INVALID_ARGUMENT", type="InvalidArgument"))
    ],
    ("VolspikeErrorsBudgetBurnFast", "log", 0): [("errors", found)],
    ("VolspikeErrorsBudgetBurnFast", "verify", 0): [("errors", above_0())],  # shows the burn
    ("VolspikeModelLoadFailed", "promql", 0): [("refused", above_0(instance="@server"))],
    ("VolspikeModelLoadFailed", "promql", 1): [
        ("refused", above_0(instance="@server", artifact="xgb-v1", result="failed"))
    ],
    ("VolspikeModelLoadFailed", "promql", 2): [
        ("refused", both(equals(1, artifact="xgb-v2"), absent(artifact="xgb-v1")))
    ],
    ("VolspikeModelLoadFailed", "sh", 0): [("refused", printed('"artifact": "xgb-v2"'))],
    ("VolspikeModelLoadFailed", "log", 0): [("refused", found)],
    ("VolspikeModelLoadFailed", "sh", 1): [("refused-fix", printed("serves xgb-v2", quick=15))],
    ("VolspikeServerNotServing", "promql", 0): [("not-serving", equals(0, instance="@server"))],
    ("VolspikeServerNotServing", "promql", 1): [("not-serving", absent(instance="@server"))],
    ("VolspikeServerNotServing", "sh", 0): [("not-serving", printed("NOT_SERVING", rc=1))],
    ("VolspikeServerNotServing", "sh", 1): [
        ("not-serving-fix", printed("the server serves xgb-v2", quick=15))
    ],
    ("VolspikeServerNotServing", "verify", 0): [
        ("not-serving-fixed", equals(1, instance="@server"))
    ],
    ("VolspikeAvailabilityBudgetBurnFast", "promql", 0): (
        RUNS_ONLY,
        "server-side fault codes: none of the induced failures is the server's own fault",
    ),
    ("VolspikeAvailabilityBudgetBurnFast", "promql", 1): (RUNS_ONLY, "as the line above"),
    ("VolspikeAvailabilityBudgetBurnFast", "promql", 2): [
        ("hung", above_0(code="DEADLINE_EXCEEDED")),
        ("dead", above_0(code="UNAVAILABLE")),
    ],
    ("VolspikeAvailabilityBudgetBurnFast", "promql", 3): [
        ("dead", absent(instance="@server")),
        ("recovered", equals(1, instance="@server")),
    ],
    ("VolspikeAvailabilityBudgetBurnFast", "verify", 0): [("dead", above_0())],
    ("VolspikeFreshnessBudgetBurnFast", "promql", 0): (
        RUNS_ONLY,
        "end-to-end lag of answers: a stalled consumer answers nothing to measure",
    ),
    ("VolspikeFreshnessBudgetBurnFast", "promql", 1): [("hung", above_0())],
    ("VolspikeFreshnessBudgetBurnFast", "promql", 2): [
        ("hung", above_0(code="DEADLINE_EXCEEDED")),
        ("dead", above_0(code="UNAVAILABLE")),
    ],
    ("VolspikeTargetDown", "promql", 0): [
        ("hung", both(equals(0, instance="@server"), equals(1, instance="@consumer"))),
        ("dead", equals(0, instance="@server")),
    ],
    ("VolspikeTargetDown", "sh", 0): [
        ("hung", printed_nothing(quick=6)),  # --max-time 2: without it, it hangs
        ("dead", printed_nothing(quick=2)),  # refused at once
        ("recovered", printed("# HELP", quick=2)),
    ],
    ("VolspikeTargetDown", "sh", 1): [("stop", process_still_there)],
    ("VolspikeTargetDown", "sh", 2): [("stop", process_gone)],
    ("VolspikeTargetDown", "sh", 3): [("restart", serving_again)],
    ("VolspikeTargetDown", "verify", 0): [("recovered", equals(1, instance="@server"))],
    ("VolspikeServerMetricsAbsent", "sh", 0): [
        ("hung", target_down("deadline exceeded")),
        ("dead", target_down("connection refused")),
    ],
    ("VolspikeServerMetricsAbsent", "verify", 0): [
        ("dead", absent(instance="@server")),
        ("recovered", equals(1, instance="@server")),
    ],
    ("VolspikeConsumerStalled", "promql", 0): [
        ("hung", above_0()),
        ("dead", LAG.seen),
        ("recovered", LAG.fell),  # "lag falling"
    ],
    ("VolspikeConsumerStalled", "promql", 1): [
        ("hung", above_0(code="DEADLINE_EXCEEDED")),
        ("dead", above_0(code="UNAVAILABLE")),
    ],
    ("VolspikeConsumerStalled", "promql", 2): [("hung", above_0(code="DEADLINE_EXCEEDED"))],
    ("VolspikeConsumerStalled", "promql", 3): [("hung", every_error_type_at_start)],
    ("VolspikeConsumerStalled", "verify", 0): [
        ("dead", ANSWERS.seen),
        ("recovered", both(above_0(), ANSWERS.rose)),
    ],
}
BACKGROUND = {("VolspikeTargetDown", "sh", 3)}  # `make serve` runs until stopped
ONCE = {  # mitigations run once; a diagnostic command is asked again until Prometheus caught up
    ("VolspikeModelLoadFailed", "sh", 1),
    ("VolspikeServerNotServing", "sh", 1),
    ("VolspikeTargetDown", "sh", 1),
    ("VolspikeTargetDown", "sh", 2),
    *BACKGROUND,
}
NOT_WALKED = {
    "VolspikeLatencyBudgetBurnFast": "slow calls: the load tests make them (loadtest/)",
    "VolspikeLatencyBudgetBurnSlow": "as the fast one, over days",
    "VolspikeAvailabilityBudgetBurnSlow": "as the fast one, over days",
    "VolspikeErrorsBudgetBurnSlow": "as the fast one, over days",
    "VolspikeFreshnessBudgetBurnSlow": "as the fast one, over days",
    "VolspikeConsumerMetricsAbsent": "a dead consumer: as the dead server's targets check",
    "VolspikeDeadLetterRatioHigh": "bad ticks: tests/pipeline/test_hostile.py sends them",
    "VolspikeThroughputBelowFloor": "no fenced step; as ConsumerStalled",
    "VolspikeConsumerOffsetLagHigh": "no fenced step; 100,000 waiting messages",
    "VolspikeBackfillShareHigh": "no fenced step; 30 minutes of mostly backfill answers",
    "VolspikeFeatureDrift": "drift takes 15-30 minutes: tools/alert_drill.py",
    "VolspikePredictionDrift": "as feature drift",
    "VolspikeDriftReportStale": "26 hours; `make drift`: test_observability_live.py",
    "VolspikeSliSourceAbsent": "a source series gone for 10 minutes (its `for:`)",
}
PHASES = (
    "errors",
    "refused",
    "refused-fix",
    "not-serving",
    "not-serving-fix",
    "not-serving-fixed",
    "hung",
    "stop",
    "dead",
    "restart",
    "recovered",
)


def test_every_step_of_the_runbook_is_walked_or_says_why_not():
    """Runs without the stack: a new step in a walked section, or a new section, fails here
    until it says what it must show during which failure (or why no failure here shows it)."""
    keys = {s.key for s in all_steps() if s.section not in NOT_WALKED}
    assert keys == set(EXPECT), {"unwalked": keys - set(EXPECT), "gone": set(EXPECT) - keys}
    walked = {k[0] for k in EXPECT}
    alerts = {r["alert"] for g in rules.all_groups()["groups"] for r in g["rules"] if "alert" in r}
    assert alerts == walked | set(NOT_WALKED), alerts ^ (walked | set(NOT_WALKED))
    assert not walked & set(NOT_WALKED)
    assert walked <= set(alert_sections())
    for plan in EXPECT.values():
        if plan[0] != RUNS_ONLY:
            assert all(phase in PHASES for phase, _ in plan), plan


# --- the stack -------------------------------------------------------------------------------
def tampered_models(work: Path) -> Path:
    """xgb-v2 (served) and an xgb-v1 whose library no longer matches its manifest's sha256."""
    models = work / "models"
    with_tampered_v1(models)
    return models


@pytest.fixture(scope="module")
def stack(kafka, tmp_path_factory):
    work = tmp_path_factory.mktemp("walk")
    env = {"VOLSPIKE_MODELS_DIR": str(tampered_models(work))}
    srv = ServerProcess(work / "server", artifact="xgb-v2", servable=(), env=env).start()
    topics = Topics.fresh(kafka)
    consumer = ConsumerProcess(kafka, srv.address, topics, work / "consumer").start()
    prom = Prometheus(work / "prom").start(
        [f"127.0.0.1:{srv.metrics_port}"], [f"127.0.0.1:{consumer.metrics_port}"]
    )
    # 320 s of back-dated history (symbols warm: their ticks are scored, so a hung server
    # stalls them), then a steady live stream for the whole walk
    feed = subprocess.Popen(
        [sys.executable, "-m", "tools.replay", "--bootstrap", kafka, "--topic", topics.ticks,
         "--quiet", "--source", "synthetic", "--rate", str(RATE), "--history-seconds", "320",
         "--count", str(RATE * (320 + 400))],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    _STARTED.append(feed)
    ctx = Ctx(prom, srv, None, consumer, env)
    try:
        deadline = time.monotonic() + 90
        while scored(consumer) < 5:
            assert time.monotonic() < deadline, "the consumer scored nothing in 90 s"
            assert consumer.proc.poll() is None, consumer.log[-3000:]
            time.sleep(0.5)
        # Prometheus holds the server's error series at 0 before any failure is induced:
        # errors made before its first scrape would be that series' first sample, and
        # rate() over it 0 (failed once in a whole run under load)
        baseline = 'volspike_rpc_errors_total{method="Predict",type="InvalidArgument"}'
        while not prom.query(baseline):
            assert time.monotonic() < deadline, f"Prometheus never scraped {baseline}"
            time.sleep(0.5)
        yield ctx
    finally:  # every process stopped even when one of them will not stop
        feed.kill()
        try:
            consumer.stop()  # first: with its server gone it would retry its batch for ever
        finally:
            try:
                for proc in ctx.background:  # `make serve`: its server and make itself
                    stop_group(proc)
                for p in (ctx.other, srv):
                    if p is not None and p.proc is not None and p.proc.poll() is None:
                        os.kill(p.proc.pid, signal.SIGCONT)
                        p.stop()
            finally:
                prom.stop()


def scored(consumer: ConsumerProcess) -> float:
    try:
        return consumer.metric('volspike_consumer_predict_calls_total{code="OK"}')
    except OSError:  # not listening yet
        return 0.0


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def set_targets(prom: Prometheus, servers: list[ServerProcess]) -> None:
    path = prom.workdir / "prometheus" / "targets" / "server.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps([{"targets": [f"127.0.0.1:{s.metrics_port}" for s in servers]}]))
    tmp.replace(path)  # file_sd re-reads it within its 1 s refresh


# --- the walk --------------------------------------------------------------------------------
def run(ctx: Ctx, step: Step, check: Check, deadline: float) -> str | None:
    """One step, once (commands) or until its check holds (queries, logs) or ``deadline``."""
    if step.kind == "log":
        return check(ctx, log_pattern(step.text))
    if step.kind == "sh" and step.key in BACKGROUND:
        proc = subprocess.Popen(
            ["bash", "-c", ctx.local(step.text)], cwd=ROOT, env=ctx.shell_env,
            start_new_session=True, stdout=(ctx.srv.workdir / "make-serve.log").open("ab"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        _STARTED.append(proc)
        return check(ctx, (proc, 0.0))
    while True:
        if step.kind == "sh":
            why = check(ctx, shell(ctx, ctx.local(step.text)))
        else:
            why = check(ctx, ctx.prom.query(step.text))
        if why is None or step.key in ONCE or time.monotonic() > deadline:
            return why
        time.sleep(0.5)


def shell(ctx: Ctx, cmd: str) -> tuple[subprocess.CompletedProcess, float]:
    """The command as an operator's shell runs it; ends a hanging one after 15 s."""
    t0 = time.monotonic()
    try:
        out = subprocess.run(
            ["bash", "-c", cmd], cwd=ROOT, env=ctx.shell_env, capture_output=True, text=True,
            timeout=15,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        got = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        out = subprocess.CompletedProcess(exc.cmd, -9, got, "still running after 15 s")
    return out, time.monotonic() - t0


def walk(ctx: Ctx, phase: str, budget: float = 40.0) -> list[str]:
    """Every step planned for ``phase``, in runbook order (diagnosis before mitigation)."""
    t0 = time.monotonic()
    deadline = t0 + budget
    failures = []
    for step in all_steps():
        plan = EXPECT.get(step.key)
        if not plan or plan[0] == RUNS_ONLY:
            continue
        for when, check in plan:
            if when == phase:
                why = run(ctx, step, check, deadline)
                if why is not None:
                    failures.append(f"[{phase}] {step.section} {step.kind}: {step.text}\n  {why}")
    ctx.timings.append(f"{phase} {time.monotonic() - t0:.1f} s")
    return failures


def bad_calls(srv: ServerProcess, seconds: float = 3.0) -> None:
    """A caller with the wrong row width (8 features, the model has 15), named risk-desk-7,
    calling 10 times a second. (A burst inside one scrape interval would show as a series
    born at its total: rate() over it is 0, the blind spot of any counter a failure creates.)"""
    with grpc.insecure_channel(srv.address) as ch:
        stub = pb_grpc.PredictorStub(ch)
        req = pb.PredictRequest(
            packed=pb.PackedRows(float32_le=np.zeros(8, np.float32).tobytes(), num_features=8)
        )
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            with pytest.raises(grpc.RpcError) as err:
                stub.Predict(req, timeout=5, metadata=[("x-client-name", "risk-desk-7")])
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            time.sleep(0.1)


def test_the_runbook_walked_through_real_failures(stack):
    ctx: Ctx = stack
    srv = ctx.server
    failures: list[str] = []
    t_all = time.monotonic()

    bad_calls(srv)
    failures += walk(ctx, "errors")

    refused, _ = shell(ctx, ctx.local("make rollback ARTIFACT=xgb-v1"))
    assert refused.returncode != 0 and "sha256" in refused.stderr, refused.stdout + refused.stderr
    failures += walk(ctx, "refused")
    failures += walk(ctx, "refused-fix")

    # a second server whose configured artifact is the tampered one: NOT_SERVING from the start
    other = ServerProcess(
        srv.workdir.parent / "not-serving", artifact="xgb-v1", servable=(), env=ctx.env
    ).start(wait_serving=False)
    ctx.other = ctx.target = other
    other.wait_health("NOT_SERVING")
    set_targets(ctx.prom, [srv, other])
    failures += walk(ctx, "not-serving")
    failures += walk(ctx, "not-serving-fix")
    failures += walk(ctx, "not-serving-fixed")
    assert other.stop() == 0
    ctx.target = None
    set_targets(ctx.prom, [srv])

    os.kill(srv.proc.pid, signal.SIGSTOP)  # hung: holds its ports, answers nothing
    failures += walk(ctx, "hung")
    failures += walk(ctx, "stop")  # the runbook's kill -TERM (ignored), kill -KILL
    failures += walk(ctx, "dead")
    failures += walk(ctx, "restart")  # the runbook's make serve
    failures += walk(ctx, "recovered", budget=60)
    print(f"walk {time.monotonic() - t_all:.0f} s: " + ", ".join(ctx.timings))
    assert not failures, "\n".join(failures)
