"""Kafka helpers shared by the tests and the pipeline benchmark."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from confluent_kafka import Consumer, Message

from tools import kafka_broker


@dataclass
class Topics:
    """A fresh set of pipeline topics and a consumer group name, isolated by a tag."""

    ticks: str
    predictions: str
    dlq: str
    group: str

    @classmethod
    def fresh(cls, kafka: str, partitions: int = 4) -> Topics:
        tag = uuid.uuid4().hex[:8]
        t = cls(f"ticks-{tag}", f"predictions-{tag}", f"dlq-{tag}", f"group-{tag}")
        kafka_broker.ensure_topics(
            kafka, {t.ticks: partitions, t.predictions: partitions, t.dlq: 1}
        )
        return t


def read_until(
    kafka: str,
    topic: str,
    done: Callable[[], bool],
    on_message: Callable[[Message], None],
    timeout: float,
) -> None:
    """Read ``topic`` from the beginning, feeding ``on_message`` until ``done()``."""
    c = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([topic])
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline:
            for m in c.consume(10_000, 0.5):
                if m.error() is None:
                    on_message(m)
    finally:
        c.close()


def read_topic(kafka: str, topic: str, expect: int, timeout: float = 90.0) -> list[Message]:
    """Every message of ``topic`` from the beginning, waiting until ``expect`` arrived."""
    out: list[Message] = []
    read_until(kafka, topic, lambda: len(out) >= expect, out.append, timeout)
    return out
