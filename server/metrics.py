"""Server metrics. The registry is passed in; nothing is global."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

from telemetry.histogram import BatchHistogram

LATENCY_BUCKETS = (
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5,
)  # fmt: skip
ROW_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 100_000)
PROBABILITY_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))  # 0.05 .. 1.0


class ServerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.latency = Histogram(
            "volspike_rpc_duration_seconds",
            "Server-side duration of each RPC, by method, artifact and gRPC code.",
            ["method", "artifact", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.requests = Counter(
            "volspike_rpc_requests",
            "RPCs handled, by method and gRPC code.",
            ["method", "code"],
            registry=registry,
        )
        self.errors = Counter(
            "volspike_rpc_errors",
            "Failed RPCs, by method, gRPC code and error type.",
            ["method", "code", "type"],
            registry=registry,
        )
        self.in_flight = Gauge(
            "volspike_rpc_in_flight",
            "RPCs being served right now, by method.",
            ["method"],
            registry=registry,
        )
        self.scoring = Gauge(
            "volspike_rows_scoring",
            "Rows being run through the trees right now.",
            registry=registry,
        )
        self.rows = Histogram(
            "volspike_rows_per_call",
            "Rows scored per call.",
            ["method"],
            buckets=ROW_BUCKETS,
            registry=registry,
        )
        self.predictions = Counter(
            "volspike_predictions", "Rows scored, by artifact.", ["artifact"], registry=registry
        )
        self.positives = Counter(
            "volspike_positive_labels",
            "Rows labelled as a coming spike, by artifact.",
            ["artifact"],
            registry=registry,
        )
        self.probability = BatchHistogram(
            "volspike_predicted_probability",
            "Predicted spike probability of every scored row.",
            PROBABILITY_BUCKETS[:-1],
            registry,
            label="artifact",
        )
        self.model_load = Histogram(
            "volspike_model_load_duration_seconds",
            "Verify + load + warm-up time of an artifact, by result.",
            ["artifact", "result"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=registry,
        )
        self.reloads = Counter(
            "volspike_model_reloads",
            "Model switches attempted, by result (ok / failed).",
            ["result"],
            registry=registry,
        )
        for result in ("ok", "failed"):  # present from the start: increase() sees the first
            self.reloads.labels(result)
        self.active_model = Gauge(
            "volspike_active_model_info",
            "1 for the artifact currently served (labels carry name and sha256).",
            ["artifact", "sha256"],
            registry=registry,
        )
        self.serving = Gauge(
            "volspike_serving", "1 while health is SERVING, else 0.", registry=registry
        )

    def set_active(self, artifact: str, sha256: str) -> None:
        self.active_model.clear()  # only the active artifact's series remains
        self.active_model.labels(artifact, sha256).set(1)
