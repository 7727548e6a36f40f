"""Consumer metrics; the registry is passed in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from consumer.drift import DriftCounter
from telemetry import names_gen as n
from telemetry.histogram import BatchHistogram

LAG_BUCKETS = n.CONSUMER_END_TO_END_LAG.buckets
ERROR_TYPES = n.CONSUMER_ERROR_TYPES
"""Every ``volspike_consumer_errors_total{type}`` (proto/contract.toml
[consumer.error_types]; tests/test_runbook.py checks the pipeline uses no other)."""


class ConsumerMetrics:
    """The families of proto/contract.toml [consumer.metrics] (telemetry/names_gen.py): their
    names, HELP, labels and buckets are the contract's; the drift families are
    consumer/drift.py's collector."""

    def __init__(self, registry: CollectorRegistry, drift_report: Path | None = None) -> None:
        self.registry = registry
        self.drift = DriftCounter(drift_report)
        registry.register(self.drift)
        self.consumed = _counter(n.CONSUMER_MESSAGES_CONSUMED, registry)
        self.predictions = _counter(n.CONSUMER_PREDICTIONS_PRODUCED, registry)
        self.warming_up = _counter(n.CONSUMER_WARMING_UP, registry)
        self.dead_lettered = _counter(n.CONSUMER_DEAD_LETTERED, registry)
        for reason in n.DEAD_LETTER_REASONS:
            self.dead_lettered.labels(reason)  # the closed set, present from the start
        self.symbols = _gauge(n.CONSUMER_SYMBOLS, registry)
        self.symbols_evicted = _counter(n.CONSUMER_SYMBOLS_EVICTED, registry)
        for why in n.EVICTIONS:
            self.symbols_evicted.labels(why)
        self.errors = _counter(n.CONSUMER_ERRORS, registry)
        for kind in ERROR_TYPES:
            self.errors.labels(kind)  # at 0 from the start: the runbook's query sees a series
        self.batch_rows = _histogram(n.CONSUMER_BATCH_ROWS, registry)
        self.processing = _histogram(n.CONSUMER_BATCH_PROCESSING, registry)
        lag = n.CONSUMER_END_TO_END_LAG
        self.e2e_lag = BatchHistogram(lag.name, lag.help, lag.buckets, registry)
        # present from the start: a warm-up that is all backfill observes nothing for minutes,
        # and an absent histogram reads as a lost source of the freshness SLI
        self.e2e_lag.observe_batch(np.empty(0))
        self.backfill = _counter(n.CONSUMER_BACKFILL_PREDICTIONS, registry)
        self.offset_lag = _gauge(n.CONSUMER_OFFSET_LAG, registry)
        self.throughput = _gauge(n.CONSUMER_THROUGHPUT, registry)
        self.retries = _counter(n.CONSUMER_PREDICT_RETRIES, registry)
        self.predict_calls = _counter(n.CONSUMER_PREDICT_CALLS, registry)
        for code in ("OK", "UNAVAILABLE", "DEADLINE_EXCEEDED"):
            self.predict_calls.labels(code)  # present from the start: rate() sees the first


def _of_type(spec: n.MetricSpec, kind: str) -> n.MetricSpec:
    if spec.type != kind:
        raise TypeError(f"{spec.name} is a {spec.type} in proto/contract.toml, not a {kind}")
    return spec


def _counter(spec: n.MetricSpec, registry: CollectorRegistry) -> Counter:
    spec = _of_type(spec, "counter")
    return Counter(spec.name, spec.help, spec.labels, registry=registry)


def _gauge(spec: n.MetricSpec, registry: CollectorRegistry) -> Gauge:
    spec = _of_type(spec, "gauge")
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


def _histogram(spec: n.MetricSpec, registry: CollectorRegistry) -> Histogram:
    spec = _of_type(spec, "histogram")
    return Histogram(spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=registry)
