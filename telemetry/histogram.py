"""Telemetry helpers shared by the server and the consumer (neither imports the other)."""

from __future__ import annotations

import bisect
import threading

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector


class BatchHistogram(Collector):
    """A histogram updated a whole numpy batch at a time: observing 1,000 values one by
    one through prometheus_client would cost more than producing them."""

    def __init__(
        self,
        name: str,
        documentation: str,
        buckets: tuple[float, ...],
        registry: CollectorRegistry,
        label: str | None = None,
    ) -> None:
        self.name, self.documentation, self.label = name, documentation, label
        self.buckets = tuple(buckets)
        self._edges = np.array(self.buckets, dtype=np.float64)
        self._lock = threading.Lock()
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        registry.register(self)

    def observe_batch(self, values: np.ndarray, label_value: str = "") -> None:
        if len(values) == 1:  # numpy's per-call cost is the whole price of one value
            self._observe_one(float(values[0]), label_value)
            return
        idx = np.searchsorted(self._edges, values, side="left")  # le semantics
        counts = np.bincount(idx, minlength=len(self.buckets) + 1)
        total = float(np.sum(values, dtype=np.float64))
        with self._lock:
            if label_value not in self._counts:
                self._counts[label_value] = np.zeros(len(self.buckets) + 1, np.int64)
                self._sums[label_value] = 0.0
            self._counts[label_value] += counts
            self._sums[label_value] += total

    def _observe_one(self, v: float, label_value: str) -> None:
        i = bisect.bisect_left(self.buckets, v)
        with self._lock:
            if label_value not in self._counts:
                self._counts[label_value] = np.zeros(len(self.buckets) + 1, np.int64)
                self._sums[label_value] = 0.0
            self._counts[label_value][i] += 1
            self._sums[label_value] += v

    def collect(self):
        labels = [self.label] if self.label else []
        fam = HistogramMetricFamily(self.name, self.documentation, labels=labels)
        with self._lock:
            items = [(k, c.cumsum(), self._sums[k]) for k, c in self._counts.items()]
        for key, cum, total in items:
            pairs = [(str(b), float(n)) for b, n in zip(self.buckets, cum[:-1], strict=True)]
            pairs.append(("+Inf", float(cum[-1])))
            fam.add_metric([key] if self.label else [], pairs, total)
        yield fam
