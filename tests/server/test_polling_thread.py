"""consumer.channel.PollingThread against both servers: one Health.Watch stream held open
keeps grpcio's polling thread between Predict calls (without it, a call made with none in
flight starts a thread), and a stream that ended with its server is opened again."""

from __future__ import annotations

import time

import grpc
import numpy as np

from consumer.channel import PollingThread
from market.features import N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb
from proto.volatility.v1 import predictor_pb2_grpc as pb_grpc
from tests.conftest import ServerProcess

ROWS = pb.PredictRequest(
    packed=pb.PackedRows(
        float32_le=np.ones((10, N_FEATURES), np.float32).tobytes(), num_features=N_FEATURES
    )
)


def spin_threads_started(monkeypatch, channel: grpc.Channel) -> int:
    """How many polling threads 30 Predict calls, one at a time, started."""
    started = []
    real = grpc._channel._run_channel_spin_thread  # type: ignore[attr-defined]

    def counting(state):
        started.append(1)
        real(state)

    monkeypatch.setattr(grpc._channel, "_run_channel_spin_thread", counting)
    stub = pb_grpc.PredictorStub(channel)
    for _ in range(30):
        assert len(stub.Predict.future(ROWS, timeout=10).result().probabilities) == 10
    monkeypatch.undo()
    return len(started)


def wait_for(cond, timeout: float = 30.0, state=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, state()
        time.sleep(0.05)


def stream_state(polling: PollingThread, first) -> str:
    """What a failed wait saw (a full `make test` once timed out here, python server)."""
    done = first.done()
    code = first.code() if done else None
    alive = polling._thread.is_alive()
    return f"opened {polling.opened}, first stream done {done} ({code}), thread alive {alive}"


def test_one_watch_stream_keeps_the_polling_thread(server, monkeypatch):
    """Mutation seen failing: the stream cancelled once opened (30 threads for 30 calls)."""
    with grpc.insecure_channel(server.address) as ch:
        assert spin_threads_started(monkeypatch, ch) >= 25  # the cost it removes
    with grpc.insecure_channel(server.address) as ch:
        polling = PollingThread(ch)
        wait_for(lambda: polling.opened == 1)
        assert spin_threads_started(monkeypatch, ch) == 0
        polling.close()


def test_a_watch_ended_by_its_server_is_opened_again(server, tmp_path, impl, monkeypatch):
    """The server stops (its Watch streams end) and starts again on the same port: the
    stream is opened again and keeps the thread for the new server too."""
    srv = ServerProcess(tmp_path / "srv", impl=impl).start()
    with grpc.insecure_channel(srv.address) as ch:
        polling = PollingThread(ch)
        wait_for(lambda: polling.opened == 1)
        first = polling._call
        assert srv.stop() == 0
        srv.start()
        wait_for(
            lambda: polling.opened >= 2 and polling._call is not first,
            state=lambda: stream_state(polling, first),
        )
        wait_for(lambda: srv.health("volatility.v1.Predictor") == "SERVING")
        assert spin_threads_started(monkeypatch, ch) <= 1  # the first call may race the watch
        polling.close()
    assert srv.stop() == 0
