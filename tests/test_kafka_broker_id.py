"""tools/kafka_broker.py's cluster ids: one that starts with '-' made the storage tool read
it as an option and refuse to format, about one broker start in 64 (seen in a
`make bench-pipeline` run)."""

from __future__ import annotations

import uuid

from tools import kafka_broker


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    dash = uuid.UUID(bytes=b"\xf8" + bytes(15))  # 0b111110..: base64 '-' first
    drawn = iter([dash, dash, uuid.UUID(int=12345)])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(drawn))
    cluster = kafka_broker.new_cluster_id()
    assert not cluster.startswith("-") and len(cluster) == 22
    assert next(drawn, None) is None  # drew until one did not


def test_cluster_ids_are_kafka_shaped_and_fresh():
    ids = {kafka_broker.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(c) == 22 and not c.startswith("-") for c in ids)
