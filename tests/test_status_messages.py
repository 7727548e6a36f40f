"""Status messages are bounded (contract.MESSAGE_CHARS code points, "..." at the cut) where
a ServiceError becomes a gRPC status (server/rpc.py). In process, through the real wrapper:
no server started (tests/server/test_kserve.py checks both servers end to end).

Mutation (seen failing): send ``exc.message`` uncut in server/rpc.py and
test_a_long_reason_arrives_cut fails."""

from __future__ import annotations

import grpc
import pytest
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import CollectorRegistry

from server import contract_gen as contract
from server.metrics import ServerMetrics
from server.rpc import CallInfo, rpc, status_message

LIMIT = contract.MESSAGE_CHARS


class Aborted(Exception):
    pass


class FakeContext:
    """What the wrapper asks of a grpc.ServicerContext."""

    def __init__(self, metadata: tuple = ()) -> None:
        self.metadata = metadata
        self.code: grpc.StatusCode | None = None
        self.details: str | None = None
        self.trailing: tuple = ()

    def invocation_metadata(self):
        return self.metadata

    def time_remaining(self):
        return None

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5000"

    def is_active(self) -> bool:
        return True

    def set_trailing_metadata(self, metadata) -> None:
        self.trailing = tuple(metadata)

    def abort(self, code, details):
        self.code, self.details = code, details
        raise Aborted


class Raising:
    """A servicer whose one handler raises the error it is given."""

    def __init__(self) -> None:
        self.metrics = ServerMetrics(CollectorRegistry())
        self.tracer = TracerProvider().get_tracer("test")
        self.error: Exception = RuntimeError("unset")

    @rpc("/volatility.v1.Predictor/ModelInfo")
    def ModelInfo(self, request, context, call: CallInfo):
        raise self.error


def status_of(error: Exception) -> tuple[grpc.StatusCode | None, str | None]:
    servicer = Raising()
    servicer.error = error
    context = FakeContext()
    with pytest.raises(Aborted):
        servicer.ModelInfo(object(), context)
    return context.code, context.details


@pytest.mark.parametrize(
    ("message", "want"),
    [
        ("", ""),
        ("x" * LIMIT, "x" * LIMIT),
        ("x" * (LIMIT + 1), "x" * (LIMIT - 3) + "..."),
        ("é" * LIMIT, "é" * LIMIT),  # code points, not bytes
        ("é" * (LIMIT + 1), "é" * (LIMIT - 3) + "..."),
        ("\U0001f600" * 5000, "\U0001f600" * (LIMIT - 3) + "..."),
    ],
)
def test_a_message_is_cut_to_the_limit_in_code_points(message, want):
    assert status_message(message) == want
    assert len(status_message(message)) <= LIMIT


def test_a_long_reason_arrives_cut():
    """45 KB of feature names quoted by an artifact_unavailable reason (a hostile artifact)."""
    names = ", ".join(f"'feature_{i:05d}_{'x' * 20}'" for i in range(1500))
    assert len(names) > 45_000
    err = contract.artifact_unavailable(name="wide", reason=f"artifact wide: features [{names}]")
    code, details = status_of(err)
    assert code == grpc.StatusCode.UNAVAILABLE
    assert details is not None and len(details) == LIMIT
    assert details == err.message[: LIMIT - 3] + "..."
    assert details.startswith("model 'wide' is servable but not loaded: artifact wide: ")


def test_a_short_message_arrives_whole():
    err = contract.not_served(name="nope", servable="['xgb-v1']")
    assert status_of(err) == (grpc.StatusCode.NOT_FOUND, err.message)


def test_the_status_details_carry_the_cut_message_and_the_kind():
    """A google.rpc.Status in grpc-status-details-bin, as grpcio-status reads it: the same
    code and (cut) message as the status, and an ErrorInfo with the kind (the native server's
    is compared over the wire in tests/server/test_differential.py). Mutation: drop the
    trailer in server/rpc.py:abort and this fails."""
    from google.rpc import error_details_pb2, status_pb2

    err = contract.artifact_unavailable(name="wide", reason="x" * 5000)
    servicer, context = Raising(), FakeContext()
    servicer.error = err
    with pytest.raises(Aborted):
        servicer.ModelInfo(object(), context)
    (key, value), *rest = context.trailing
    assert key == "grpc-status-details-bin" and not rest
    st = status_pb2.Status.FromString(value)
    assert (st.code, st.message) == (grpc.StatusCode.UNAVAILABLE.value[0], context.details)
    info = error_details_pb2.ErrorInfo()
    assert len(st.details) == 1 and st.details[0].Unpack(info)
    assert (info.reason, info.domain, dict(info.metadata)) == (
        "ArtifactUnavailable",
        contract.ERROR_DOMAIN,
        {},
    )


def test_an_unexpected_exception_is_internal_without_its_text():
    code, details = status_of(RuntimeError("secret " * 1000))
    assert code == grpc.StatusCode.INTERNAL
    assert details == contract.internal().message
