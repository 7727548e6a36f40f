"""Consumer settings: defaults < ``VOLSPIKE_CONSUMER_*`` environment < command line."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from market.features import WARMUP_MS

ENV_PREFIX = "VOLSPIKE_CONSUMER_"


@dataclass(frozen=True)
class ConsumerSettings:
    bootstrap: str = "127.0.0.1:9092"
    """Kafka bootstrap servers."""
    group_id: str = "volspike-consumer"
    """Consumer group; consumers sharing it split the partitions."""
    ticks_topic: str = "ticks"
    """Input topic (JSON ticks keyed by symbol)."""
    predictions_topic: str = "predictions"
    """Output topic (one prediction per input tick, keyed by symbol)."""
    dlq_topic: str = "ticks.dlq"
    """Dead-letter topic: original bytes plus the reason, for messages that cannot be scored."""
    server: str = "127.0.0.1:50051"
    """gRPC address of the Predict server."""
    metrics_port: int = 8001
    """Prometheus /metrics port."""
    metrics_host: str = "127.0.0.1"
    """Address the /metrics endpoint binds (0.0.0.0 in a container)."""
    max_rows: int = 1000
    """Most ticks per micro-batch (one Predict call)."""
    max_wait_ms: int = 20
    """Longest a micro-batch waits to fill before it is sent."""
    max_in_flight: int = 4
    """Predict calls outstanding at once."""
    deadline_s: float = 2.0
    """Deadline of each Predict call."""
    retry_max_backoff_s: float = 2.0
    """Cap of the exponential backoff between retries of UNAVAILABLE/DEADLINE_EXCEEDED."""
    commit_interval_ms: int = 200
    """How often acknowledged offsets are committed."""
    max_future_ms: int = 5_000
    """Ticks whose event time is further ahead of this consumer's clock are dead-lettered."""
    dead_letter_max_bytes: int = 65_536
    """A dead-lettered value larger than this is cut to it; headers say so and carry the
    original size and sha256 (the DLQ must accept whatever arrives on the ticks topic)."""
    live_sample_dir: str = str(Path(__file__).resolve().parent.parent / ".run" / "live-sample")
    """Where the latest scored feature rows are written for the drift report (`make drift`)."""
    live_sample_rows: int = 10_000
    """Rows in the live sample: a uniform sample of the rows scored over the last
    live_sample_window_s (consumer/drift.py LiveSample)."""
    live_sample_window_s: float = 1200.0
    """The window the live sample covers (20 minutes)."""
    live_sample_flush_s: float = 30.0
    """How often the live sample file is rewritten."""
    drift_report_metrics: str = str(
        Path(__file__).resolve().parent.parent / "reports" / "drift" / "metrics.json"
    )
    """The last drift report's summary, exported with this consumer's metrics."""
    max_symbols: int = 20_000
    """Most symbols whose feature state is kept (consumer/states.py): past it, the tenth
    with the oldest clocks is evicted (counted; they start cold if they trade again)."""
    max_window_ticks: int = 300_000
    """Most ticks one symbol may hold in its 300 s window (1,000 ticks/s); past it a tick is
    dead-lettered (reason ``symbol_flood``)."""
    answer_retries: int = 2
    """A malformed answer (wrong length, a probability outside [0, 1]) is asked again this
    many times, then its batch is dead-lettered (reason ``bad_answer``)."""
    schema_wait_s: float = 10.0
    """How long a batch waits for ModelInfo to confirm its artifact's feature list before it
    is dead-lettered (reason ``schema_unconfirmed``); never published unchecked."""
    backfill_min_age_s: float = 20.0
    """A tick marked backfill (Kafka header ``backfill: 1``, consumer/messages.py) is kept out
    of the end-to-end lag histogram (the freshness SLI) only if it was at least this old when
    read, and then counted in volspike_consumer_backfill_predictions_total: a marked tick
    read younger is measured like any other, so a producer marking live ticks hides nothing
    while this consumer keeps up. 10 s short of the freshness bound (30 s,
    observability/slo.toml): history read just inside the bound and answered just outside it
    (batching, a retry) is not counted stale."""
    warmup_ms: int = WARMUP_MS + 10_000
    """On assignment, feature state is rebuilt from this much event time before the
    committed offset: the features' longest window (300 s) plus 10 s, so a symbol that
    traded in those 10 s is as warm as if the consumer had never stopped."""

    @classmethod
    def load(cls, **overrides: object) -> ConsumerSettings:
        values: dict[str, Any] = {}
        kinds = {f.name: f.type for f in fields(cls)}
        parsers: dict[object, Callable[[str], object]] = {"int": int, "float": float}
        for name, kind in kinds.items():
            raw = os.environ.get(ENV_PREFIX + name.upper())
            if raw is not None:
                values[name] = parsers.get(kind, str)(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)
