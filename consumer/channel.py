"""The Predict channel: one server address, several, or a DNS name of several replicas.

``--server`` takes
  127.0.0.1:50051                       one server (as before)
  127.0.0.1:50051,127.0.0.1:50052       replicas by address (IPv4 or [IPv6] literals)
  dns:///volspike-server:50051          replicas behind one name (a headless Service)

Several replicas get grpc's ``round_robin`` policy: every call goes to the next ready
replica, and client-side health checking (grpc.health.v1 Watch on the Predictor service)
takes a replica that reports NOT_SERVING (a rollback that failed to load, a drain) or dies out
of the rotation at once. A call in flight on a replica that dies fails UNAVAILABLE; the
pipeline's retry sends it again, to a replica that is still there.
"""

from __future__ import annotations

import ipaddress
import json
import re
import threading
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

PREDICTOR = "volatility.v1.Predictor"
BALANCED = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "healthCheckConfig": {"serviceName": PREDICTOR},
    }
)


class ServerAddressError(ValueError):
    pass


def _literal(host: str) -> int:
    """4 or 6 for an IP literal host ([v6] in brackets), else ServerAddressError."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(bare).version
    except ValueError:
        raise ServerAddressError(
            f"server address {host!r} in a list is not an IP literal: list replicas by "
            "address, or give one DNS name as dns:///name:port"
        ) from None


def host_port(address: str, what: str) -> tuple[str, int]:
    """(host, port) of ``host:port`` ([v6]:port); ServerAddressError naming ``what``."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        raise ServerAddressError(f"server address {what!r} is not host:port")
    return host, int(port)


def target(server: str) -> tuple[str, bool]:
    """(grpc target, balanced) for a ``--server`` value; ServerAddressError names what is
    wrong with a malformed one."""
    server = server.strip()
    if not server:
        raise ServerAddressError("server address is empty")
    if server.startswith("dns:"):
        # dns:host:port, dns:///host:port or dns://authority/host:port (grpc's forms)
        name = server[4:]
        if name.startswith("//"):
            name = name[2:].partition("/")[2]
        host_port(name, server)
        return server, True
    parts = [p.strip() for p in server.split(",")]
    if len(parts) == 1:
        host_port(parts[0], parts[0])
        return parts[0], False
    versions = set()
    for p in parts:
        host, _ = host_port(p, p)
        versions.add(_literal(host))
    if len(versions) > 1:
        raise ServerAddressError(f"server addresses mix IPv4 and IPv6: {server!r}")
    if len(set(parts)) != len(parts):
        raise ServerAddressError(f"server address listed twice in {server!r}")
    return f"ipv{versions.pop()}:{','.join(parts)}", True


def open_channel(server: str, options: Sequence[tuple[str, object]]) -> grpc.Channel:
    tgt, balanced = target(server)
    if balanced:
        options = [*options, ("grpc.service_config", BALANCED)]
    return grpc.insecure_channel(tgt, options=options)


class PollingThread:
    """Keeps grpcio's polling thread for the channel alive between Predict calls.

    grpcio's sync channel reads its completion queue on a thread that it starts when a call
    begins with no other call in flight, and that ends with the last one. The consumer has
    1-4 calls in flight and often none, so while draining a backlog it started a thread for
    most calls (``Thread.start`` was ~30 % of ``Predict.future``, docs/benchmarks.md). A
    ``grpc.health.v1.Health/Watch`` stream (both servers serve it) is a call that lasts as
    long as its server: held open, the polling thread stays. A daemon thread reads it (a
    stream whose messages are never read would never report its end) and opens it again,
    a second later, when it ends (a restarted or draining server, UNIMPLEMENTED)."""

    RETRY_S = 1.0

    def __init__(self, channel: grpc.Channel) -> None:
        self._watch = health_pb2_grpc.HealthStub(channel).Watch
        self._call: grpc.Future | None = None
        self._closed = threading.Event()
        self.opened = 0  # streams opened (tests)
        self._thread = threading.Thread(target=self._run, name="grpc-keep-polling", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        request = health_pb2.HealthCheckRequest(service=PREDICTOR)
        while not self._closed.is_set():
            try:
                self._call = call = self._watch(request)
                self.opened += 1
                for _ in call:  # status changes: not needed, read so the end is seen
                    pass
            except grpc.RpcError:
                pass
            except ValueError:  # the channel is closed
                return
            self._closed.wait(self.RETRY_S)

    def close(self) -> None:
        self._closed.set()
        if self._call is not None:
            self._call.cancel()
        self._thread.join(5)
