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
from collections.abc import Sequence

import grpc

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
