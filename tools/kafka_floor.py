"""The Kafka floor of ``make bench-pipeline``: the least any Python consumer of the ticks
topic does. It reads each tick and writes a record of a prediction's size back to another
topic, keyed by the tick's key, and commits what Kafka acknowledged, with the consumer's
own client settings (``consumer.__main__.kafka_clients``), read size, wait and commit
interval. No decode, features, Predict call or encoding: on the same backlog, broker and
run, the pipeline's drain rate over this one's says how much of the Kafka path the
consumer's own work costs.

    python -m tools.kafka_floor --bootstrap HOST:PORT --topic IN --out OUT --count N
"""

from __future__ import annotations

import argparse
import time
import uuid

from consumer.__main__ import kafka_clients, tune_gc
from consumer.config import ConsumerSettings


class FloorError(RuntimeError):
    """A delivery failed or the backlog did not arrive in time."""


def run(
    bootstrap: str,
    topic: str,
    out: str,
    count: int,
    value_bytes: int,
    timeout: float,
    group: str | None = None,
) -> int:
    """Pass ``count`` records from ``topic`` to ``out`` (consumer group ``group``, a fresh
    one by default); returns how many were passed."""
    group = group or f"floor-{uuid.uuid4().hex[:8]}"
    s = ConsumerSettings(bootstrap=bootstrap, group_id=group)
    consumer, producer, failures = kafka_clients(s)
    consumer.subscribe([topic])
    wait, interval = s.max_wait_ms / 1000, s.commit_interval_ms / 1000
    produce = producer.produce
    pad = b" " * value_bytes  # trailing blanks: a record of a prediction's size
    passed, next_commit = 0, 0.0
    deadline = time.monotonic() + timeout
    tune_gc()
    try:
        while passed < count:
            if time.monotonic() > deadline:
                raise FloorError(f"only {passed:,} of {count:,} records in {timeout:.0f} s")
            for m in consumer.consume(s.max_rows, wait):
                if m.error() is not None:
                    continue
                value = m.value() or b""
                produce(out, value + pad[len(value) :], m.key())
                passed += 1
            producer.poll(0)
            if time.monotonic() >= next_commit:  # as the consumer: acknowledged, then commit
                producer.flush(30)
                if failures:
                    raise FloorError(f"delivery failed: {failures[0]}")
                consumer.commit(asynchronous=True)
                next_commit = time.monotonic() + interval
        producer.flush(30)
        if failures or len(producer):
            raise FloorError(f"{len(producer)} undelivered, failures: {failures[:1]}")
        consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return passed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", required=True, help="the ticks to read")
    p.add_argument("--out", required=True, help="where each record is written")
    p.add_argument("--count", type=int, required=True, help="records to pass, then stop")
    p.add_argument("--value-bytes", type=int, default=200, help="pad each record to this")
    p.add_argument("--timeout", type=float, default=180.0)
    a = p.parse_args()
    n = run(a.bootstrap, a.topic, a.out, a.count, a.value_bytes, a.timeout)
    print(f"passed {n:,} records from {a.topic} to {a.out}")


if __name__ == "__main__":
    main()
