"""Consumer metrics; the registry is passed in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumer.drift import DriftCounter
from consumer.messages import PIPELINE_REASONS, REASONS
from telemetry.histogram import BatchHistogram

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ERROR_TYPES = (
    "kafka_consume",  # consuming from Kafka failed
    "delivery",  # Kafka refused an output (retried)
    "undeliverable",  # an output Kafka cannot take at all
    "commit",  # an offset commit failed (retried)
    "bad_answer",  # a malformed Predict answer (asked again)
    "schema_check",  # ModelInfo could not confirm the artifact's feature list
    "drift",  # the drift bins failed (no answer lost)
)
"""Every ``volspike_consumer_errors_total{type}`` (tests/test_runbook.py checks the
pipeline uses no other)."""


class ConsumerMetrics:
    def __init__(self, registry: CollectorRegistry, drift_report: Path | None = None) -> None:
        self.registry = registry
        self.drift = DriftCounter(drift_report)
        registry.register(self.drift)
        self.consumed = Counter(
            "volspike_consumer_messages_consumed",
            "Tick messages read from Kafka.",
            registry=registry,
        )
        self.predictions = Counter(
            "volspike_consumer_predictions_produced",
            "Records on the predictions topic acknowledged by Kafka (warming-up records included).",
            registry=registry,
        )
        self.warming_up = Counter(
            "volspike_consumer_warming_up",
            "Ticks found warming up, answered with a record without a probability: their "
            "symbol has less than 300 s of unbroken history.",
            registry=registry,
        )
        self.dead_lettered = Counter(
            "volspike_consumer_dead_lettered",
            "Messages sent to the dead-letter topic, by reason kind.",
            ["reason"],
            registry=registry,
        )
        for reason in (*REASONS, *PIPELINE_REASONS):
            self.dead_lettered.labels(reason)  # the closed set, present from the start
        self.symbols = Gauge(
            "volspike_consumer_symbols",
            "Symbols whose feature state is held (partition, symbol pairs).",
            registry=registry,
        )
        self.symbols_evicted = Counter(
            "volspike_consumer_symbols_evicted",
            "Symbol states dropped: idle (no tick for 300 s + slack: it could no longer be "
            "warm) or cap (max_symbols reached: the oldest clocks go first).",
            ["why"],
            registry=registry,
        )
        for why in ("idle", "cap"):
            self.symbols_evicted.labels(why)
        self.errors = Counter(
            "volspike_consumer_errors", "Errors, by type.", ["type"], registry=registry
        )
        for kind in ERROR_TYPES:
            self.errors.labels(kind)  # at 0 from the start: the runbook's query sees a series
        self.batch_rows = Histogram(
            "volspike_consumer_batch_rows",
            "Ticks per Predict call.",
            buckets=(1, 10, 50, 100, 250, 500, 1000, 2000),
            registry=registry,
        )
        self.processing = Histogram(
            "volspike_consumer_batch_processing_seconds",
            "From batch consumed to its predictions handed to Kafka.",
            buckets=LAG_BUCKETS,
            registry=registry,
        )
        self.e2e_lag = BatchHistogram(
            "volspike_consumer_end_to_end_lag_seconds",
            "Now minus event time when the prediction is produced (backfill excepted: "
            "volspike_consumer_backfill_predictions_total).",
            LAG_BUCKETS,
            registry,
        )
        # present from the start: a warm-up that is all backfill observes nothing for minutes,
        # and an absent histogram reads as a lost source of the freshness SLI
        self.e2e_lag.observe_batch(np.empty(0))
        self.backfill = Counter(
            "volspike_consumer_backfill_predictions",
            "Answers (predictions and warming-up records) to ticks marked backfill (Kafka header "
            "backfill: 1, history sent to warm symbols) that were at least backfill_min_age_s "
            "old when read: not observed in volspike_consumer_end_to_end_lag_seconds (the "
            "freshness SLI).",
            registry=registry,
        )
        self.offset_lag = Gauge(
            "volspike_consumer_offset_lag",
            "High watermark minus committed offset, per partition.",
            ["partition"],
            registry=registry,
        )
        self.throughput = Gauge(
            "volspike_consumer_throughput_messages_per_second",
            "Messages answered per second over the last interval.",
            registry=registry,
        )
        self.retries = Counter(
            "volspike_consumer_predict_retries",
            "Predict calls retried, by gRPC code.",
            ["code"],
            registry=registry,
        )
        self.predict_calls = Counter(
            "volspike_consumer_predict_calls",
            "Every Predict attempt this consumer made (retries included), by the gRPC code it "
            "ended with as the client saw it: a dead or hung server counts nothing itself, so "
            "the availability SLI adds this consumer's UNAVAILABLE and DEADLINE_EXCEEDED.",
            ["code"],
            registry=registry,
        )
        for code in ("OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
            self.predict_calls.labels(code)  # present from the start: rate() sees the first
