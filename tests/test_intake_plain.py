"""The intake's C loop over plain ticks (consumer/_intake.h ``read_plain``) against its
Python reference (``Intake._one`` for every message): the same rows, order, warming-up
and backfill ticks, offsets tracked, dead letters and feature state, on mixed batches of
plain ticks, bad ones, new and flooded symbols, errors, partitions warming up or no
longer ours, and old ticks with and without the backfill header."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson
import pytest
from confluent_kafka import KafkaError
from opentelemetry import trace
from prometheus_client import CollectorRegistry

from consumer import intake as intake_mod
from consumer.config import ConsumerSettings
from consumer.messages import _no_plain_path, read_plain
from consumer.metrics import ConsumerMetrics
from consumer.offsets import PartitionAcks
from consumer.outputs import DeliveryFailures
from consumer.pipeline import Pipeline
from tests.test_consumer_unit import Consumer, Producer, Stub


def test_the_intake_gets_the_c_loop():
    """`make models` builds consumer/_wire (make test and make test-fast both run it): a
    missing build fails here instead of every comparison below passing vacuously."""
    assert read_plain is not _no_plain_path and read_plain.__module__ == "consumer._wire"


NOW = int(time.time() * 1000)
T0 = NOW - 400_000  # the warmed symbols' history starts here


class Err:
    def __init__(self, code: int) -> None:
        self._code = code

    def code(self) -> int:
        return self._code

    def __str__(self) -> str:
        return f"error {self._code}"


class Msg:
    def __init__(self, p: int, off: int, value: bytes | None, headers=None, err=None) -> None:
        self._p, self._off, self._value, self._headers, self._err = p, off, value, headers, err

    def error(self):
        return self._err

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._off

    def value(self) -> bytes | None:
        return self._value

    def key(self):
        return None

    def headers(self):
        return self._headers


def make_pipeline(tmp_path) -> Pipeline:
    s = ConsumerSettings(
        live_sample_dir=str(tmp_path),
        drift_report_metrics=str(tmp_path / "none.json"),
        max_window_ticks=400,
    )
    pl = Pipeline(
        s,
        Consumer(),  # type: ignore[arg-type]
        Producer(),  # type: ignore[arg-type]
        Stub(),  # type: ignore[arg-type]
        ConsumerMetrics(CollectorRegistry(), None),
        trace.get_tracer("test"),
        DeliveryFailures(),
    )
    pl.intake.clock = pl.outputs.clock = lambda: NOW  # both runs judge the same times
    pl.acks[0], pl.acks[1] = PartitionAcks(), PartitionAcks()  # partition 2: not ours
    pl.offsets.warm_until[1] = 20  # partition 1 replays its first offsets into features
    for p, sym in ((0, "A"), (0, "B"), (1, "A")):  # ready: 310 s of history
        for k in range(310):
            pl.states.get(p, sym).update(T0 + k * 1000, 100.0 + (k % 3), 1.0)
    for _ in range(400):  # flooded: a full window
        pl.states.get(0, "F").update(NOW - 1000, 100.0, 1.0)
    return pl


def messages(seed: int, n: int) -> list[Msg]:
    rng = random.Random(seed)
    offs = {0: 0, 1: 0, 2: 0}
    out = []
    for _ in range(n):
        p = rng.choice((0, 0, 0, 1, 2))
        off = offs[p]
        offs[p] += 1
        t = NOW - rng.choice((0, 0, 5_000, 60_000))  # some older than backfill_min_age_s
        sym = rng.choice(("A", "A", "B", "C", "D", "F"))
        value = orjson.dumps({"symbol": sym, "event_time_ms": t, "price": 100.5, "size": 2.0})
        kind = rng.random()
        headers = None
        if kind < 0.05:
            value = b"{not json"
        elif kind < 0.08:  # an escaped symbol: C leaves it to Python, which accepts it
            value = value.replace(f'"{sym}"'.encode(), b'"\\u0041"')
        elif kind < 0.11:
            value = orjson.dumps({"symbol": sym, "event_time_ms": NOW + 10**9, "price": 1.0})
        elif kind < 0.14:
            out.append(Msg(p, off, None, err=Err(KafkaError._PARTITION_EOF)))
            continue
        elif kind < 0.16:
            out.append(Msg(p, off, None, err=Err(KafkaError._TRANSPORT)))
            continue
        elif kind < 0.30:
            headers = [("backfill", b"1")]
        elif kind < 0.35:
            headers = [("other", b"x")]
        out.append(Msg(p, off, value, headers))
    return out


def state_of(pl: Pipeline) -> dict:
    return {k: (st.held, st.last_t, st.ready) for k, st in pl.states.states.items()}


def run(pl: Pipeline, batches: list[list[Msg]]) -> list:
    rows = []
    for msgs in batches:
        r = pl.intake.read(msgs)  # type: ignore[arg-type]
        # repr: a tick's missing bid is a NaN, and NaN != NaN
        rows.append((r.x.tobytes(), repr(r.meta), repr(r.warming), r.order, sorted(r.backfill)))
    return [
        rows,
        {p: list(a.pending) for p, a in pl.acks.items()},
        dict(pl.offsets.warm_until),
        pl.producer.out,  # type: ignore[attr-defined]
        state_of(pl),
    ]


@pytest.mark.parametrize("seed", range(6))
def test_the_c_loop_does_what_the_python_loop_does(tmp_path, monkeypatch, seed):
    msgs = messages(seed, 600)
    batches = [msgs[i : i + 97] for i in range(0, len(msgs), 97)]
    calls = {"one": 0}
    one = intake_mod.Intake._one

    def counted(self, *a):
        calls["one"] += 1
        return one(self, *a)

    monkeypatch.setattr(intake_mod.Intake, "_one", counted)
    fast = run(make_pipeline(tmp_path / "c"), batches)
    by_c = len(msgs) - calls["one"]
    monkeypatch.setattr(intake_mod, "read_plain", _no_plain_path)
    calls["one"] = 0
    slow = run(make_pipeline(tmp_path / "py"), batches)
    assert calls["one"] == len(msgs)  # the reference took every message
    assert by_c > len(msgs) // 3, f"the C loop took only {by_c} of {len(msgs)} messages"
    names = ["rows", "pending offsets", "warm_until", "outputs", "feature state"]
    for name, a, b in zip(names, fast, slow, strict=True):
        assert a == b, f"{name} differ (seed {seed})"
    assert any(r[4] for r in fast[0]), "no backfill tick in the batches"
    assert fast[3], "no dead letter in the batches"


def test_odd_arguments_are_refused_or_left_to_python(tmp_path):
    pl = make_pipeline(tmp_path)
    x = np.empty((4, 1), dtype=np.float32)
    tick = {"symbol": "A", "event_time_ms": NOW, "price": 1.0, "size": 1.0}
    msgs = [Msg(0, 0, orjson.dumps(tick))]
    rest = (pl.offsets.warm_until, pl.acks, pl.states.states, 400, x, [], [], bytearray())
    with pytest.raises(TypeError):
        read_plain(tuple(msgs), 0, NOW, 1000, NOW, *rest, set(), ("backfill", b"1"))
    with pytest.raises(TypeError):
        read_plain(msgs, 0, NOW, 1000, NOW)
    # a clock beyond 64 bits: every message is Python's
    assert read_plain(msgs, 0, 2**70, 1000, NOW, *rest, set(), ("backfill", b"1")) == 0
    # x of the wrong shape: update_into's own error, not a crash
    with pytest.raises(ValueError):
        read_plain(msgs, 0, NOW, 1000, NOW, *rest, set(), ("backfill", b"1"))


# --- hostile doubles: what the C loop must survive and still match Python on -----------------


class Dropping(Msg):
    """Its error() empties the batch list, which held the only reference to it."""

    def __init__(self, msgs: list, *a, **k) -> None:
        super().__init__(*a, **k)
        self.msgs = msgs

    def error(self):
        self.msgs.clear()
        return None


class Evicting(Msg):
    """Its value() drops the partition's acknowledgements and its symbol's state."""

    def __init__(self, pl: Pipeline, *a, **k) -> None:
        super().__init__(*a, **k)
        self.pl = pl

    def value(self):
        self.pl.acks.pop(0, None)
        self.pl.states.states.pop((0, "A"), None)
        return super().value()


class Raising(Msg):
    def __init__(self, where: str, *a, **k) -> None:
        super().__init__(*a, **k)
        self.where = where

    def value(self):
        if self.where == "value":
            raise ValueError("value() failed")
        return super().value()

    def headers(self):
        if self.where == "headers":
            raise ValueError("headers() failed")
        return super().headers()


def plain_tick(t: int = NOW) -> bytes:
    return orjson.dumps({"symbol": "A", "event_time_ms": t, "price": 100.5, "size": 2.0})


def outcome(pl: Pipeline, msgs: list) -> tuple:
    try:
        r = pl.intake.read(msgs)  # type: ignore[arg-type]
        got: tuple = ("rows", r.x.tobytes(), repr(r.meta), repr(r.warming), r.order, r.backfill)
    except Exception as exc:  # the same exception, with the same side effects
        got = ("raised", type(exc).__name__, str(exc))
    pending = {p: list(a.pending) for p, a in pl.acks.items() if a is not None}
    return got, pending, pl.producer.out, state_of(pl)  # type: ignore[attr-defined]


HOSTILE = {
    "falsy headers on an old tick": lambda pl: [
        Msg(0, k, plain_tick(NOW - 60_000), headers=h) for k, h in enumerate((0, b"", False, []))
    ],
    "acks of the partition set to None": lambda pl: (
        pl.acks.__setitem__(0, None),  # type: ignore[func-returns-value]
        [Msg(0, 0, plain_tick())],
    )[1],
    "the symbol's state set to None": lambda pl: (
        pl.states.states.__setitem__((0, "A"), None),  # type: ignore[func-returns-value]
        [Msg(0, 0, plain_tick())],
    )[1],
    "value() raises": lambda pl: [Msg(0, 0, plain_tick()), Raising("value", 0, 1, plain_tick())],
    "headers() raises on an old tick": lambda pl: [
        Raising("headers", 0, 0, plain_tick(NOW - 60_000), headers=[("backfill", b"1")])
    ],
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_doubles_get_what_the_python_loop_gives(tmp_path, monkeypatch, case):
    fast = outcome(pl := make_pipeline(tmp_path / "c"), HOSTILE[case](pl))
    monkeypatch.setattr(intake_mod, "read_plain", _no_plain_path)
    slow = outcome(pl := make_pipeline(tmp_path / "py"), HOSTILE[case](pl))
    assert fast == slow


def test_a_message_whose_value_evicts_its_own_state_costs_no_crash(tmp_path):
    """Out of contract (a real Message runs no Python code), but it must not crash: the C
    loop leaves the message to Python once its state is gone, which drops it (its partition
    is no longer ours); Python alone would track it before value() ran."""
    pl = make_pipeline(tmp_path)
    r = pl.intake.read([Evicting(pl, 0, 0, plain_tick()), Msg(0, 1, plain_tick())])  # type: ignore[list-item]
    assert (r.meta, r.warming, 0 in pl.acks) == ([], [], False)


def test_a_subclass_tracking_offsets_its_own_way_is_called(tmp_path):
    seen = []

    class Tracking(PartitionAcks):
        def track(self, offset: int) -> None:
            seen.append(offset)
            super().track(offset)

    pl = make_pipeline(tmp_path)
    pl.acks[0] = Tracking()
    pl.intake.read([Msg(0, 5, plain_tick()), Msg(0, 6, plain_tick())])  # type: ignore[list-item]
    assert seen == [5, 6]


DROPPING = """
import numpy as np, orjson, sys
sys.path.insert(0, {root!r})
from tests.test_intake_plain import Dropping, make_pipeline, plain_tick, NOW
from consumer.messages import read_plain
import pathlib, tempfile
pl = make_pipeline(pathlib.Path(tempfile.mkdtemp()))
for k in range(50):
    msgs = []
    msgs.append(Dropping(msgs, 0, k, plain_tick()))
    junk = [object() for _ in range(1000)]  # reuse the freed memory
    x = np.empty((4, 30), np.float32)
    read_plain(msgs, 0, NOW, 5000, NOW - 20000, pl.offsets.warm_until, pl.acks,
               pl.states.states, 400, x, [], [], bytearray(), set(), ("backfill", b"1"))
print("survived")
"""


def test_a_message_freed_by_its_own_method_is_not_used_after_free(tmp_path):
    """PYTHONMALLOC=debug poisons freed memory: a use after free crashes (exit 139)."""
    root = str(Path(__file__).resolve().parent.parent)
    run = subprocess.run(
        [sys.executable, "-c", DROPPING.format(root=root)],
        env={**os.environ, "PYTHONMALLOC": "debug"},
        capture_output=True,
        cwd=root,
        timeout=120,
    )
    assert run.returncode == 0 and b"survived" in run.stdout, run.stderr[-2000:]
