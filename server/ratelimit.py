"""Log lines a client can cause on every call, rate limited: at most one line per cause per
``PERIOD`` seconds, then (with the next line of that cause) a line saying how many were
suppressed. A client sending an oversized ``traceparent`` on every call would otherwise
write one WARNING line per call (OpenTelemetry's propagator logs each one) and fill the
disk at the server's call rate."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable

PERIOD = 10.0
"""Seconds between two lines of one cause."""
MAX_CAUSES = 1024
"""Causes remembered at once; the oldest are forgotten first (a cause carries no client
text, but a bound costs nothing)."""
CLIENT_TRIGGERED = (
    # W3C trace context: oversized or malformed traceparent / tracestate headers
    "opentelemetry.trace.propagation.tracecontext",
    "opentelemetry.trace.span",
    # W3C baggage: oversized or malformed baggage headers
    "opentelemetry.baggage.propagation",
    "opentelemetry.baggage",
    # a request that failed to deserialize or a handler that raised (grpc's own lines)
    "grpc._common",
    "grpc._server",
    # the RPC wrapper's "<method> failed" line of an unexpected exception
    "server.rpc",
)
"""The loggers a client's call can make write a line."""


class RateLimiter:
    """Per cause: the first event in a window of ``period`` seconds passes, the rest are
    counted. ``allow`` returns (pass it?, events suppressed since the last one that
    passed). Thread-safe."""

    def __init__(self, period: float = PERIOD, clock: Callable[[], float] = time.monotonic):
        self.period = period
        self.clock = clock
        self._lock = threading.Lock()
        self._causes: dict[Hashable, list] = {}  # cause -> [window start, suppressed]

    def allow(self, cause: Hashable) -> tuple[bool, int]:
        now = self.clock()
        with self._lock:
            state = self._causes.get(cause)
            if state is not None and now - state[0] < self.period:
                state[1] += 1
                return False, 0
            suppressed = state[1] if state is not None else 0
            self._causes.pop(cause, None)
            if len(self._causes) >= MAX_CAUSES:
                del self._causes[next(iter(self._causes))]
            self._causes[cause] = [now, 0]
            return True, suppressed


class RateLimitFilter(logging.Filter):
    """A logger filter: a record's cause is its logger, level and message template (not
    the formatted text: each oversized header differs, the cause is the same), or the
    ``ratelimit_cause`` its caller passed in ``extra``. A record that passes after others
    of its cause were dropped is preceded by a line saying how many."""

    def __init__(self, limiter: RateLimiter | None = None) -> None:
        super().__init__()
        self.limiter = limiter or RateLimiter()

    def filter(self, record: logging.LogRecord) -> bool:
        cause = getattr(record, "ratelimit_cause", None)
        key = (record.name, record.levelno, str(record.msg) if cause is None else cause)
        allowed, suppressed = self.limiter.allow(key)
        if allowed and suppressed:
            _suppressed_line(record, suppressed, self.limiter.period)
        return allowed


def _suppressed_line(record: logging.LogRecord, suppressed: int, period: float) -> None:
    """Sent straight to the handlers: it must not be counted (or dropped) as its cause."""
    logger = logging.getLogger(record.name)
    line = logger.makeRecord(
        record.name,
        record.levelno,
        record.pathname,
        record.lineno,
        "%d more line(s) like %r were suppressed (at most one per %.0f s)",
        (suppressed, str(record.msg)[:200], period),
        None,
    )
    logger.callHandlers(line)


_installed: dict[str, RateLimitFilter] = {}
_install_lock = threading.Lock()


def limit_client_triggered_logs(names: tuple[str, ...] = CLIENT_TRIGGERED) -> None:
    """Rate-limit every logger a client's call can write to (idempotent)."""
    with _install_lock:
        for name in names:
            if name not in _installed:
                _installed[name] = RateLimitFilter()
                logging.getLogger(name).addFilter(_installed[name])
