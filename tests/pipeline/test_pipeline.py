"""End to end against the real broker and the real server: nothing lost, nothing made up."""

from __future__ import annotations

import json
import signal
import time

from confluent_kafka import Producer

from tests.conftest import ServerProcess
from tests.pipeline.conftest import (
    ConsumerProcess,
    Topics,
    assert_answer,
    end_offsets,
    expected_probabilities,
    predictions_by_offset,
    predictions_covering,
    read_topic,
    replay,
)


def check_complete(kafka, topics, n, atol=1e-6) -> dict:
    want = expected_probabilities(kafka, topics.ticks, n)
    got = predictions_covering(kafka, topics.predictions, set(want))
    missing = set(want) - set(got)
    assert not missing, f"{len(missing)} input offsets without a prediction"
    assert any(v is not None for v in want.values()), "nothing scored: all warming up"
    for key, preds in got.items():
        for d in preds:  # duplicates (at-least-once) must carry the same answer
            assert_answer(d, want[key], atol)
    return got


def test_every_tick_answered_with_the_models_probability(kafka, grpc_server, tmp_path):
    topics = Topics.fresh(kafka)
    c = ConsumerProcess(kafka, grpc_server.address, topics, tmp_path).start()
    try:
        n = replay(
            kafka,
            topics.ticks,
            "--source",
            "synthetic",
            "--count",
            "20000",
            "--keep-time",
            "--seed",
            "3",
        )
        n += replay(kafka, topics.ticks, "--source", "real", "--count", "5000", "--keep-time")
        got = check_complete(kafka, topics, n)
        sample = next(d[0] for d in got.values() if not d[0]["warming_up"])
        assert set(sample) == {
            "warming_up",
            "symbol",
            "event_time_ms",
            "source_partition",
            "source_offset",
            "probability",
            "label",
            "artifact",
            "latency_ms",
        }
        assert sample["artifact"] == "xgb-v2"
        assert c.stop() == 0
        committed, high = end_offsets(kafka, topics.ticks, topics.group, 4)
        assert [max(c, 0) for c in committed] == high  # SIGTERM: all done and committed
    finally:
        c.stop()


def test_order_per_symbol_is_preserved(kafka, grpc_server, tmp_path):
    topics = Topics.fresh(kafka)
    c = ConsumerProcess(kafka, grpc_server.address, topics, tmp_path).start()
    try:
        n = replay(kafka, topics.ticks, "--source", "synthetic", "--count", "8000", "--keep-time")
        msgs = read_topic(kafka, topics.predictions, n)
        last: dict[str, int] = {}
        for m in sorted(msgs, key=lambda m: (m.partition(), m.offset())):
            d = json.loads(m.value())
            assert d["source_offset"] > last.get(d["symbol"], -1), d["symbol"]
            last[d["symbol"]] = d["source_offset"]
    finally:
        c.stop()


def test_poison_messages_go_to_the_dead_letter_topic(kafka, grpc_server, tmp_path):
    topics = Topics.fresh(kafka, partitions=1)
    good = {
        "symbol": "BTC-USD",
        "event_time_ms": 1_767_225_600_000,
        "price": 65000.0,
        "size": 0.5,
        "bid": 64999.0,
        "ask": 65001.0,
    }
    poison = [
        (b"{not json", "invalid JSON"),
        (
            json.dumps({k: v for k, v in good.items() if k != "price"}).encode(),
            "missing field 'price'",
        ),
        (json.dumps({**good, "size": "big"}).encode(), "field 'size' must be a number, got str"),
        (json.dumps({**good, "price": -3.0}).encode(), "field 'price' must be >= 1e-12"),
        (json.dumps({**good, "event_time_ms": 17}).encode(), "is not a plausible epoch time"),
        (json.dumps({**good, "bid": 70000.0}).encode(), "field 'bid' 70000.0 is above 'ask'"),
    ]
    p = Producer({"bootstrap.servers": kafka})
    for i in range(3):
        p.produce(
            topics.ticks,
            json.dumps({**good, "event_time_ms": good["event_time_ms"] + i}).encode(),
            key="BTC-USD",
        )
    for raw, _ in poison:
        p.produce(topics.ticks, raw, key="BTC-USD")
    for i in range(3, 6):
        p.produce(
            topics.ticks,
            json.dumps({**good, "event_time_ms": good["event_time_ms"] + i}).encode(),
            key="BTC-USD",
        )
    p.flush(30)
    c = ConsumerProcess(kafka, grpc_server.address, topics, tmp_path).start()
    try:
        dlq = read_topic(kafka, topics.dlq, len(poison))
        assert len(dlq) == len(poison)
        for m, (raw, reason) in zip(sorted(dlq, key=lambda m: m.offset()), poison, strict=True):
            headers = dict(m.headers())
            assert m.value() == raw
            assert reason in headers["error"].decode(), headers["error"]
            assert headers["source_topic"].decode() == topics.ticks
        preds = predictions_by_offset(read_topic(kafka, topics.predictions, 6))
        assert sorted(o for _, o in preds) == [0, 1, 2, 9, 10, 11]
        deadline = time.monotonic() + 10
        while c.metric("volspike_consumer_dead_lettered_total") < len(poison):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert c.stop() == 0
        committed, high = end_offsets(kafka, topics.ticks, topics.group, 1)
        assert committed == high == [12]
    finally:
        c.stop()


def test_sigkill_mid_stream_loses_nothing(kafka, grpc_server, tmp_path):
    topics = Topics.fresh(kafka)
    c = ConsumerProcess(kafka, grpc_server.address, topics, tmp_path, name="first").start()
    n = replay(
        kafka,
        topics.ticks,
        "--source",
        "synthetic",
        "--count",
        "60000",
        "--keep-time",
        "--seed",
        "5",
    )
    deadline = time.monotonic() + 60
    # killed mid-stream, once something is committed (a restart then warms from a commit)
    while c.metric("volspike_consumer_predictions_produced_total") < 15_000 or not any(
        x > 0 for x in end_offsets(kafka, topics.ticks, topics.group, 4)[0]
    ):
        assert time.monotonic() < deadline, c.log
        time.sleep(0.05)
    c.proc.send_signal(signal.SIGKILL)
    c.proc.wait(10)
    c2 = ConsumerProcess(kafka, grpc_server.address, topics, tmp_path, name="second").start()
    try:
        got = check_complete(kafka, topics, n)
        assert sum(len(v) for v in got.values()) >= n
        assert "warming features from offset" in c2.log
    finally:
        assert c2.stop() == 0


def test_server_outage_is_retried_not_dropped(kafka, tmp_path):
    srv = ServerProcess(tmp_path / "srv").start()
    topics = Topics.fresh(kafka)
    c = ConsumerProcess(kafka, srv.address, topics, tmp_path).start()
    try:
        n = replay(
            kafka,
            topics.ticks,
            "--source",
            "synthetic",
            "--count",
            "40000",  # ~540 s of event time: past the 300 s warm-up, so Predict is called
            "--keep-time",
            "--seed",
            "8",
        )
        read_topic(kafka, topics.predictions, n)
        assert srv.stop() == 0
        n += replay(
            kafka,
            topics.ticks,
            "--source",
            "synthetic",
            "--count",
            "5000",
            "--keep-time",
            "--seed",
            "9",
        )
        time.sleep(4)  # the server stays down for several seconds
        assert c.metric("volspike_consumer_predict_retries_total") > 0
        assert c.proc.poll() is None
        srv = ServerProcess(tmp_path / "srv2", port=srv.port).start()
        check_complete(kafka, topics, n)
    finally:
        assert c.stop() == 0
        srv.stop()


def test_two_consumers_split_the_partitions(kafka, grpc_server, tmp_path):
    topics = Topics.fresh(kafka)
    a = ConsumerProcess(kafka, grpc_server.address, topics, tmp_path, name="a").start()
    b = ConsumerProcess(kafka, grpc_server.address, topics, tmp_path, name="b").start()
    try:
        time.sleep(3)
        n = replay(
            kafka,
            topics.ticks,
            "--source",
            "synthetic",
            "--count",
            "30000",
            "--keep-time",
            "--seed",
            "11",
        )
        check_complete(kafka, topics, n)
        answered = [x.metric("volspike_consumer_predictions_produced_total") for x in (a, b)]
        assert all(v > 0 for v in answered), answered
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
