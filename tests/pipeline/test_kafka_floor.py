"""The Kafka floor of make bench-pipeline (tools/kafka_floor.py) against a real broker:
every record passed once, padded to the size asked for, keys kept, the input committed;
a backlog that never comes is an error naming how far it got."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from tools import kafka_broker
from tools.kafka_floor import FloorError, run
from tools.kafka_io import Topics, read_topic

N = 3000


def test_the_floor_passes_every_record_padded_and_commits(kafka):
    topics = Topics.fresh(kafka)
    out = f"floor-{topics.ticks}"
    kafka_broker.ensure_topics(kafka, {out: 4})
    p = Producer({"bootstrap.servers": kafka})
    sent = {}
    for i in range(N):
        value = b'{"symbol":"S%d","n":%d}' % (i % 7, i)
        sent[value] = f"S{i % 7}".encode()
        p.produce(topics.ticks, value, sent[value])
    assert p.flush(30) == 0
    assert run(kafka, topics.ticks, out, N, 200, 60, group=topics.group) == N
    got = read_topic(kafka, out, N, timeout=60)
    assert len(got) == N
    assert all(len(m.value()) == 200 for m in got)
    assert {m.value().rstrip(b" "): m.key() for m in got} == sent
    c = Consumer({"bootstrap.servers": kafka, "group.id": topics.group})
    try:
        committed = c.committed([TopicPartition(topics.ticks, i) for i in range(4)], timeout=10)
    finally:
        c.close()
    assert sum(tp.offset for tp in committed) == N


def test_a_backlog_that_never_comes_is_an_error_naming_how_far_it_got(kafka):
    topics = Topics.fresh(kafka)
    p = Producer({"bootstrap.servers": kafka})
    for i in range(10):
        p.produce(topics.ticks, b"x%d" % i)
    assert p.flush(30) == 0
    with pytest.raises(FloorError, match="only 10 of 50 records"):
        run(kafka, topics.ticks, f"floor-{topics.ticks}", 50, 10, 5)
