"""Log lines a client can cause on every call are rate limited (server/ratelimit.py): one
line per cause per 10 s, then one saying how many were suppressed. Before, every call with
an oversized traceparent wrote a WARNING line (OpenTelemetry's propagator).

Mutation (seen failing): make RateLimiter.allow always pass and the 1,000-call tests here
fail (1,000 lines); drop ``limit_client_triggered_logs()`` from create_server and
tests/server/test_log_flood.py fails."""

from __future__ import annotations

import logging
import threading

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from server.metrics import ServerMetrics
from server.ratelimit import (
    CLIENT_TRIGGERED,
    PERIOD,
    RateLimiter,
    RateLimitFilter,
    limit_client_triggered_logs,
)
from server.rpc import CallInfo, rpc


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_event_per_cause_per_period_then_the_count():
    clock = Clock()
    lim = RateLimiter(10.0, clock)
    assert lim.allow("a") == (True, 0)
    assert [lim.allow("a") for _ in range(5)] == [(False, 0)] * 5
    assert lim.allow("b") == (True, 0)  # causes are counted apart
    clock.now += 9.99
    assert lim.allow("a") == (False, 0)
    clock.now += 0.01
    assert lim.allow("a") == (True, 6)  # the window passed: the count of the dropped ones
    assert lim.allow("a") == (False, 0)
    clock.now += 10
    assert lim.allow("a") == (True, 1)
    clock.now += 10
    assert lim.allow("a") == (True, 0)


def test_the_limiter_is_thread_safe():
    lim = RateLimiter(3600.0)
    passed: list[bool] = []

    def hammer() -> None:
        passed.extend(lim.allow("x")[0] for _ in range(2000))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert passed.count(True) == 1 and len(passed) == 16_000


def test_the_filter_keys_by_template_and_reports_the_suppressed(caplog):
    clock = Clock()
    logger = logging.getLogger("test.ratelimit.filter")
    filt = RateLimitFilter(RateLimiter(10.0, clock))
    logger.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            for i in range(100):  # one template, a different value each time
                logger.warning("header %s too long", "x" * i)
            logger.warning("another cause")
            logger.info("header %s too long", "x")  # another level: another cause
            clock.now += PERIOD
            logger.warning("header %s too long", "y")
    finally:
        logger.removeFilter(filt)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "header  too long",
        "another cause",
        "header x too long",
        "99 more line(s) like 'header %s too long' were suppressed (at most one per 10 s)",
        "header y too long",
    ]


def test_a_caller_may_name_the_cause(caplog):
    logger = logging.getLogger("test.ratelimit.cause")
    filt = RateLimitFilter(RateLimiter(3600.0))
    logger.addFilter(filt)
    try:
        with caplog.at_level(logging.ERROR, logger=logger.name):
            for method in ("A", "B", "A", "B"):
                logger.error("%s failed", method, extra={"ratelimit_cause": method})
    finally:
        logger.removeFilter(filt)
    assert [r.getMessage() for r in caplog.records] == ["A failed", "B failed"]


@pytest.fixture(autouse=True)
def fresh_limits():
    """Each test starts with no cause seen (the filters are per process)."""
    limit_client_triggered_logs()  # as create_server does
    for name in CLIENT_TRIGGERED:
        for f in logging.getLogger(name).filters:
            if isinstance(f, RateLimitFilter):
                f.limiter = RateLimiter()


class Live:
    """A servicer with one wrapped handler that does nothing (as ServerLive)."""

    def __init__(self) -> None:
        self.metrics = ServerMetrics(CollectorRegistry())
        self.tracer = TracerProvider().get_tracer("test")

    @rpc("/volatility.v1.Predictor/ModelInfo")
    def ModelInfo(self, request, context, call: CallInfo):
        return "ok"

    @rpc("/volatility.v1.Predictor/Predict")
    def Predict(self, request, context, call: CallInfo):
        raise RuntimeError("a bug a request can reach")


class Context:
    def __init__(self, metadata: tuple) -> None:
        self.metadata = metadata

    def invocation_metadata(self):
        return self.metadata

    def time_remaining(self):
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    def is_active(self) -> bool:
        return True

    def set_trailing_metadata(self, metadata) -> None:
        pass

    def abort(self, code, details):
        raise grpc.RpcError(details)


HEADERS = {
    "traceparent": "00-" + "a" * 600,  # over OpenTelemetry's 512 characters
    "tracestate": "k=" + "v" * 600,  # an invalid member (values are at most 256)
    "baggage": ",".join(f"k{i}=v" for i in range(200)),  # over 180 members
}


@pytest.mark.parametrize("header", sorted(HEADERS))
def test_a_thousand_calls_with_an_oversized_header_write_a_line_or_two(caplog, header):
    """Through the RPC wrapper, which extracts the caller's trace context (the end-to-end
    run against a real server: tests/server/test_log_flood.py)."""
    metadata: tuple = ((header, HEADERS[header]),)
    if header == "tracestate":  # read only beside a valid traceparent
        metadata += (("traceparent", f"00-{'1' * 32}-{'2' * 16}-01"),)
    live = Live()
    caplog.set_level(logging.DEBUG)
    for _ in range(1000):
        assert live.ModelInfo(object(), Context(metadata)) == "ok"
    ours = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert 1 <= len(ours) <= 2, [r.getMessage() for r in ours]
    assert ours[0].name.startswith("opentelemetry.")
    if header == "traceparent":
        assert "traceparent header exceeded the maximum length" in ours[0].getMessage()


def test_a_handler_that_raises_on_every_call_logs_one_traceback(caplog):
    live = Live()
    caplog.set_level(logging.DEBUG)
    for _ in range(1000):
        with pytest.raises(grpc.RpcError):
            live.Predict(object(), Context(()))
    ours = [r for r in caplog.records if r.name == "server.rpc"]
    assert [r.getMessage() for r in ours] == ["/volatility.v1.Predictor/Predict failed"]
    assert ours[0].exc_info is not None


def test_every_client_triggered_logger_is_limited():
    limit_client_triggered_logs()
    limit_client_triggered_logs()  # idempotent: one filter each
    for name in CLIENT_TRIGGERED:
        filters = [f for f in logging.getLogger(name).filters if isinstance(f, RateLimitFilter)]
        assert len(filters) == 1, name
