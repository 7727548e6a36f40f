"""Every server test runs against both implementations of the same contract: the native
(Go) front end that `make serve` runs and the Python reference server."""

from __future__ import annotations

import grpc
import pytest

from tests.conftest import SERVER_IMPLS, ServerProcess


@pytest.fixture(scope="module", params=SERVER_IMPLS)
def impl(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def server(tmp_path_factory, impl):
    srv = ServerProcess(tmp_path_factory.mktemp(f"server-{impl}"), impl=impl).start()
    yield srv
    assert srv.stop() == 0


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(server.address) as ch:
        yield ch


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Both implementations side by side (xgb-v2 active; xgb-v1 and the uncalibrated
    logistic crypto-logit-v1 servable), per module."""
    both = {
        impl: ServerProcess(
            tmp_path_factory.mktemp(f"both-{impl}"),
            impl=impl,
            servable=("xgb-v1", "crypto-logit-v1"),
        )
        for impl in SERVER_IMPLS
    }
    try:
        for srv in both.values():
            srv.start(wait_serving=False)
        for srv in both.values():
            srv.wait_health("SERVING")
        yield both
    finally:
        for srv in both.values():
            srv.stop()
