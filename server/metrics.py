"""Server metrics. The registry is passed in; nothing is global."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from server import contract_gen as c
from telemetry.histogram import BatchHistogram


class ServerMetrics:
    """The metric families of proto/contract.toml, as the native server registers them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.latency = _histogram(c.RPC_DURATION, registry)
        self.requests = _counter(c.RPC_REQUESTS, registry)
        self.errors = _counter(c.RPC_ERRORS, registry)
        self.in_flight = _gauge(c.RPC_IN_FLIGHT, registry)
        self.scoring = _gauge(c.ROWS_SCORING, registry)
        self.rows = _histogram(c.ROWS_PER_CALL, registry)
        self.predictions = _counter(c.PREDICTIONS, registry)
        self.positives = _counter(c.POSITIVE_LABELS, registry)
        spec = _of_type(c.PREDICTED_PROBABILITY, "histogram")
        (label,) = spec.labels
        self.probability = BatchHistogram(spec.name, spec.help, spec.buckets, registry, label)
        self.model_load = _histogram(c.MODEL_LOAD, registry)
        self.reloads = _counter(c.MODEL_RELOADS, registry)
        for result in c.RESULTS:  # present from the start: increase() sees the first
            self.reloads.labels(result)
        # Predict's outcome series too: a series born at its first failure hides that
        # failure from rate() (the errors SLI missed a first burst of a new code)
        self.requests.labels("Predict", "OK")
        for kind, code in c.KIND_CODES:
            self.requests.labels("Predict", code)
            self.errors.labels("Predict", code, kind)
        self.active_model = _gauge(c.ACTIVE_MODEL, registry)
        self.serving = _gauge(c.SERVING, registry)

    def set_active(self, artifact: str, sha256: str) -> None:
        self.active_model.clear()  # only the active artifact's series remains
        self.active_model.labels(artifact, sha256).set(1)


def _of_type(spec: c.MetricSpec, kind: str) -> c.MetricSpec:
    if spec.type != kind:
        raise TypeError(f"{spec.name} is a {spec.type} in proto/contract.toml, not a {kind}")
    return spec


def _counter(spec: c.MetricSpec, registry: CollectorRegistry) -> Counter:
    spec = _of_type(spec, "counter")
    return Counter(spec.name, spec.help, spec.labels, registry=registry)


def _gauge(spec: c.MetricSpec, registry: CollectorRegistry) -> Gauge:
    spec = _of_type(spec, "gauge")
    return Gauge(spec.name, spec.help, spec.labels, registry=registry)


def _histogram(spec: c.MetricSpec, registry: CollectorRegistry) -> Histogram:
    spec = _of_type(spec, "histogram")
    return Histogram(spec.name, spec.help, spec.labels, buckets=spec.buckets, registry=registry)
