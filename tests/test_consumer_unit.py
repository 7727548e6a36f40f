"""The consumer loop in process, with Kafka and the server replaced by recording fakes:
output order, warming-up records and dead letters, checked tick by tick. (The same paths
run against the real broker and server in tests/pipeline; these pin the bookkeeping.)"""

from __future__ import annotations

import time

import grpc
import numpy as np
import orjson
import pytest
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from consumer.config import ConsumerSettings
from consumer.metrics import ConsumerMetrics
from consumer.offsets import PartitionAcks
from consumer.pipeline import Pipeline
from market.features import FEATURE_NAMES, N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb


class Msg:
    def __init__(self, off: int, value: bytes) -> None:
        self._off, self._value = off, value

    def error(self):
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._off

    def value(self) -> bytes:
        return self._value

    def key(self):
        return None


class Producer:
    def __init__(self) -> None:
        self.out: list[tuple[str, bytes | None, list | None]] = []

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None) -> None:
        self.out.append((topic, value, headers))
        on_delivery(None, None)

    def poll(self, _t=0) -> int:
        return 0


class Future:
    def __init__(self, resp=None, err=None) -> None:
        self.resp, self.err = resp, err

    def done(self) -> bool:
        return True

    def result(self):
        if self.err is not None:
            raise self.err
        return self.resp


class RpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "refused by the test"


class Stub:
    """Predict.future answers ``first``; a blocking retry (Predict(...)) raises ``retry``."""

    def __init__(self, first: grpc.StatusCode | None = None, retry=None, features=None) -> None:
        self.first, self.retry, self.features = first, retry, features
        self.Predict = self
        self.model_info_calls = 0

    def future(self, req, timeout=None, metadata=None) -> Future:
        if self.first is not None:
            return Future(err=RpcError(self.first))
        n = len(req.packed.float32_le) // (4 * N_FEATURES)
        return Future(pb.PredictResponse(probabilities=[0.5] * n, labels=[False] * n, artifact="m"))

    def __call__(self, req, timeout=None, metadata=None):
        raise RpcError(self.retry)

    def ModelInfo(self, req, timeout=None):
        self.model_info_calls += 1
        if self.features is None:  # no drift bins, schema unknown: not under test
            raise RpcError(grpc.StatusCode.UNAVAILABLE)
        return pb.ModelInfoResponse(feature_names=self.features)


class Consumer:
    def assignment(self) -> list:
        return []

    def pause(self, _a) -> None: ...

    def resume(self, _a) -> None: ...


def pipeline(tmp_path, stub: Stub) -> Pipeline:
    s = ConsumerSettings(
        live_sample_dir=str(tmp_path), drift_report_metrics=str(tmp_path / "none.json")
    )
    metrics = ConsumerMetrics(CollectorRegistry(), None)
    pl = Pipeline(s, Consumer(), Producer(), stub, metrics, trace.get_tracer("test"))  # type: ignore[arg-type]
    pl.acks[0] = PartitionAcks()
    pl._sleep = lambda _s: None  # type: ignore[method-assign]
    return pl


T0 = int(time.time() * 1000) - 400_000


def tick(sym: str, t: int, price: float) -> bytes:
    return orjson.dumps({"symbol": sym, "event_time_ms": T0 + t, "price": price, "size": 1.0})


def warm(pl: Pipeline, symbol: str) -> None:  # 310 s of history: the symbol is ready
    for k in range(310):
        pl._state(0, symbol).update(T0 + k * 1000, 100.0 + (k % 3), 1.0)


def outputs(pl: Pipeline) -> list[tuple]:
    out = []
    for topic, value, headers in pl.producer.out:  # type: ignore[attr-defined]
        if topic == pl.s.predictions_topic:
            v = orjson.loads(value)
            out.append(
                ("pred", v["source_offset"], "warm" if v["warming_up"] else v["probability"])
            )
        else:
            h = dict(headers)
            out.append(("dlq", int(h["source_offset"]), h["reason"].decode()))
    return out


def test_warming_and_scored_ticks_are_answered_in_offset_order(tmp_path):
    pl = pipeline(tmp_path, Stub())
    warm(pl, "A")  # B is cold
    batch = [tick("B", 311_000, 5.0), tick("A", 311_000, 101.0), tick("B", 311_500, 5.0)]
    pl._handle([Msg(i, v) for i, v in enumerate(batch)])
    pl._handle([Msg(3, tick("B", 312_000, 5.0))])  # a warming-only batch, queued behind
    pl._complete(drain=True)
    assert outputs(pl) == [
        ("pred", 0, "warm"),
        ("pred", 1, 0.5),
        ("pred", 2, "warm"),
        ("pred", 3, "warm"),
    ]
    assert pl.acks[0].advance() == 4  # every offset answered: the commit covers them all
    assert pl.metrics.warming_up._value.get() == 3


def test_a_retry_answered_with_a_final_error_dead_letters_instead_of_crashing(tmp_path):
    """UNAVAILABLE, then INVALID_ARGUMENT on the retry: before, the RpcError escaped the
    loop and the consumer died, again at every restart on the same ticks."""
    stub = Stub(first=grpc.StatusCode.UNAVAILABLE, retry=grpc.StatusCode.INVALID_ARGUMENT)
    pl = pipeline(tmp_path, stub)
    warm(pl, "A")
    pl._handle([Msg(0, tick("A", 311_000, 101.0)), Msg(1, tick("B", 311_000, 5.0))])
    pl._complete(drain=True)
    assert outputs(pl) == [("dlq", 0, "predict_rejected"), ("pred", 1, "warm")]
    assert pl.acks[0].advance() == 2
    assert np.isclose(pl.metrics.retries.labels("UNAVAILABLE")._value.get(), 1)


@pytest.mark.parametrize("reordered", [False, True])
def test_answers_from_a_model_listing_other_features_are_dead_letters(tmp_path, reordered):
    """Packed rows carry no names: a model whose manifest lists the same number of features
    in another order would score the wrong columns. (Mutation: make _schema_differs return
    False and the reordered case writes a prediction.)"""
    names = FEATURE_NAMES[::-1] if reordered else FEATURE_NAMES
    pl = pipeline(tmp_path, Stub(features=list(names)))
    warm(pl, "A")
    pl._handle([Msg(0, tick("A", 311_000, 101.0)), Msg(1, tick("B", 311_000, 5.0))])
    pl._complete(drain=True)
    first = ("dlq", 0, "schema_mismatch") if reordered else ("pred", 0, 0.5)
    assert outputs(pl) == [first, ("pred", 1, "warm")]
    assert pl.acks[0].advance() == 2  # answered either way: nothing is lost
    if reordered:
        _, _, headers = pl.producer.out[0]  # type: ignore[attr-defined]
        assert "lists features ['spread_bps_rel'" in dict(headers)["error"].decode()


def test_the_schema_check_is_cached_rechecked_and_fails_open(tmp_path, monkeypatch):
    """Asked once per artifact, again after SCHEMA_RECHECK_S (a restarted server may serve a
    rebuilt artifact of the same name); a failed ModelInfo writes the answers unchecked,
    counts schema_check and asks again 5 s later, not on every batch."""
    from consumer import pipeline as pipeline_module

    clock = [1000.0]
    monkeypatch.setattr(pipeline_module.time, "monotonic", lambda: clock[0])
    stub = Stub(features=None)  # ModelInfo fails
    pl = pipeline(tmp_path, stub)
    warm(pl, "A")

    def batch(off: int) -> None:
        pl._handle([Msg(off, tick("A", 311_000 + off, 101.0))])
        pl._complete(drain=True)

    batch(0)
    batch(1)
    assert stub.model_info_calls == 1 and outputs(pl)[-1] == ("pred", 1, 0.5)
    assert pl.metrics.errors.labels("schema_check")._value.get() == 2
    clock[0] += 5
    stub.features = list(FEATURE_NAMES)
    batch(2)
    batch(3)
    assert stub.model_info_calls == 2
    stub.features = list(FEATURE_NAMES[::-1])  # the artifact was rebuilt in another order
    clock[0] += pipeline_module.SCHEMA_RECHECK_S - 1
    batch(4)
    assert outputs(pl)[-1] == ("pred", 4, 0.5)  # still trusted
    clock[0] += 1
    batch(5)
    assert stub.model_info_calls == 3 and outputs(pl)[-1] == ("dlq", 5, "schema_mismatch")
    assert pl.acks[0].advance() == 6
