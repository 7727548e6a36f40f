"""The one wrapper every RPC goes through: server span (continuing the caller's W3C
trace context), error mapping, and the per-call metrics with a trace-id exemplar.

Only our own services are wrapped, so health checks never produce spans.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode

from server import contract_gen as contract
from server.codec import cut
from server.errors import ServiceError
from server.metrics import ServerMetrics

logger = logging.getLogger(__name__)


@dataclass
class CallInfo:
    """What a handler tells the wrapper about the call it served."""

    span: trace.Span
    artifact: str = ""
    rows: int = 0
    short_deadline: bool = False
    """Less than CLIENT_DEADLINE_FLOOR_MS of the deadline was left when the server began the
    call: timing out while scoring is then the client's (ClientDeadline)."""


class Malformed:
    """Stands in for a request whose bytes did not parse, so the wrapper can answer
    INVALID_ARGUMENT instead of gRPC's generic UNKNOWN."""

    __slots__ = ("error", "type_name")

    def __init__(self, type_name: str, error: Exception) -> None:
        self.type_name = type_name
        self.error = error


def tolerant_deserializer(message_cls) -> Callable[[bytes], object]:
    parse = message_cls.FromString
    name = message_cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> object:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(name, exc)

    return deserialize


def generic_handler(servicer, service: ServiceDescriptor) -> grpc.GenericRpcHandler:
    """Method handlers for every unary method of ``service`` with tolerant parsing. A proto
    method without an ``@rpc`` handler refuses the start (the generated base class would
    answer UNIMPLEMENTED for it forever), and every method's in-flight gauge exists from the
    start, as on the native server."""
    handlers = {}
    for m in service.methods:
        fn = getattr(servicer, m.name, None)
        if not hasattr(fn, "__wrapped__"):
            raise RuntimeError(f"{service.full_name}/{m.name} has no handler")
        servicer.metrics.in_flight.labels(m.name)
        handlers[m.name] = grpc.unary_unary_rpc_method_handler(
            fn,
            request_deserializer=tolerant_deserializer(GetMessageClass(m.input_type)),
            response_serializer=GetMessageClass(m.output_type).SerializeToString,
        )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


Handler = Callable[[object, object, grpc.ServicerContext, CallInfo], object]


def rpc(full_method: str):
    """Decorate ``def handler(self, request, context, call) -> response``; ``self``
    must have ``metrics: ServerMetrics`` and ``tracer``."""
    method = full_method.rsplit("/", 1)[-1]

    def deco(fn: Handler):
        @functools.wraps(fn)
        def wrapper(self, request, context: grpc.ServicerContext):
            metrics: ServerMetrics = self.metrics
            t0 = time.perf_counter()
            in_flight = metrics.in_flight.labels(method)
            in_flight.inc()
            parent = extract(dict(context.invocation_metadata() or ()))
            code = grpc.StatusCode.OK
            call = None
            with self.tracer.start_as_current_span(
                full_method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.method": method},
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                call = CallInfo(span)
                try:
                    if type(request) is Malformed:
                        raise contract.malformed(
                            type_name=request.type_name, detail=str(request.error)
                        )
                    remaining = context.time_remaining()
                    if remaining is not None and remaining <= 0:
                        raise contract.deadline_before()
                    if not context.is_active():
                        raise contract.cancelled_before()
                    floor = contract.CLIENT_DEADLINE_FLOOR_MS / 1000
                    call.short_deadline = remaining is not None and remaining < floor
                    return fn(self, request, context, call)
                except ServiceError as exc:
                    code = exc.code
                    message = status_message(exc.message)
                    _record_error(metrics, span, method, exc.kind, code, message)
                    if exc.kind not in ("Cancelled", "ClientDeadline"):  # the client gave up
                        _log_rejected(context, full_method, exc.kind, code, message)
                    abort(context, code, message, exc.kind)  # raises: the call ends here
                except Exception as exc:
                    # rate limited (server/ratelimit.py): a request that makes a handler
                    # raise could otherwise write a traceback per call
                    logger.exception(
                        "%s failed",
                        full_method,
                        extra={"ratelimit_cause": (full_method, type(exc).__name__)},
                    )
                    err = contract.internal()  # the cause is logged, never sent
                    code = err.code
                    _record_error(metrics, span, method, err.kind, code, err.message)
                    abort(context, code, err.message, err.kind)
                finally:
                    elapsed = time.perf_counter() - t0
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if call.artifact:
                        span.set_attribute("volspike.artifact", call.artifact)
                    if call.rows:
                        span.set_attribute("volspike.rows", call.rows)
                        metrics.rows.labels(method).observe(call.rows)
                    sc = span.get_span_context()
                    exemplar = (
                        {"trace_id": format(sc.trace_id, "032x")}
                        if sc.trace_flags.sampled
                        else None
                    )
                    metrics.latency.labels(method, call.artifact, code.name).observe(
                        elapsed, exemplar=exemplar
                    )
                    metrics.requests.labels(method, code.name).inc()
                    in_flight.dec()

        return wrapper

    return deco


def abort(context, code: grpc.StatusCode, message: str, kind: str) -> None:
    """End the call with ``code`` and ``message``, and in the status details (the
    ``grpc-status-details-bin`` trailer, a ``google.rpc.Status``, as grpcio-status writes it) a
    ``google.rpc.ErrorInfo`` whose reason is the kind, as the native server sends it."""
    st = status_pb2.Status(code=code.value[0], message=message, details=[_error_info(kind)])
    context.set_trailing_metadata(((STATUS_DETAILS_KEY, st.SerializeToString()),))
    context.abort(code, message)


STATUS_DETAILS_KEY = "grpc-status-details-bin"


@functools.cache
def _error_info(kind: str) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason=kind, domain=contract.ERROR_DOMAIN))
    return packed


def status_message(message: str) -> str:
    """The status message a call ends with: at most contract.MESSAGE_CHARS characters (code
    points), the last three "..." when cut, as the native server cuts it (a reason quoting
    an operator's artifact, e.g. 45 KB of feature names, included)."""
    limit = contract.MESSAGE_CHARS
    return message if len(message) <= limit else message[: limit - 3] + "..."


def _log_rejected(context, method: str, kind: str, code: grpc.StatusCode, message: str) -> None:
    """One line per rejected call (rate limited per method and kind: server/ratelimit.py) with
    who sent it: the peer and the client's name (``x-client-name`` metadata, else its
    user-agent), so "fix the caller" can be acted on. The native server logs the same."""
    md = dict(context.invocation_metadata() or ())
    client = md.get("x-client-name") or md.get("user-agent") or "unknown"
    logger.warning(
        "call rejected method=%s code=%s type=%s peer=%s client=%s message=%s",
        method,
        code.name,
        kind,
        context.peer(),
        cut(str(client), contract.MODEL_CHARS_IN_ERROR),
        message,
        extra={"ratelimit_cause": ("rejected", method, kind)},
    )


def _record_error(
    metrics: ServerMetrics, span, method: str, kind: str, code: grpc.StatusCode, message: str
) -> None:
    metrics.errors.labels(method, code.name, kind).inc()
    span.set_status(Status(StatusCode.ERROR, message))
    span.set_attribute("error.type", kind)
