"""Continuous drift, counted where the features are made: each micro-batch's feature values
and predictions go into the active artifact's reference bins (from its manifest, asked once
per artifact with ModelInfo), one numpy pass per feature, and leave as Prometheus counters;
recording rules turn them into each feature's PSI (observability/rules.py). A bounded ring of
the latest rows is written now and then for the Evidently report (`make drift`).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from drift import bins as db

logger = logging.getLogger(__name__)
PREDICTION = "prediction"  # the feature label of the predicted probability's bins


class ArtifactBins:
    """One artifact's reference bins and the live counts against them."""

    def __init__(self, artifact: str, manifest: dict) -> None:
        spec = manifest.get("drift") or {}
        names = tuple(manifest["feature_names"])
        if set(spec.get("features", {})) != set(names) or "prediction" not in spec:
            raise ValueError(f"artifact {artifact}: manifest has no drift bins for its features")
        self.artifact = artifact
        self.names = names
        self.bins = [db.Bins.from_json(spec["features"][n]) for n in names]
        self.pred_bins = db.Bins.from_json(spec["prediction"])
        self.counts = [np.zeros(b.size, np.int64) for b in self.bins]
        self.pred_counts = np.zeros(self.pred_bins.size, np.int64)

    def observe(self, x: np.ndarray, probs: np.ndarray) -> None:
        for j, b in enumerate(self.bins):
            self.counts[j] += db.count(b, x[:, j].astype(np.float64))
        self.pred_counts += db.count(self.pred_bins, probs.astype(np.float64))


class DriftCounter(Collector):
    """Exports ``volspike_consumer_feature_bin_total{artifact,feature,bin}`` (live counts)
    and ``volspike_drift_reference_share{artifact,feature,bin}`` (the manifest's shares),
    ``feature="prediction"`` for the predicted probability; plus the last drift report's
    figures when a report has been written (``report_metrics``)."""

    def __init__(self, report_metrics: Path | None = None) -> None:
        self.by_artifact: dict[str, ArtifactBins] = {}
        self.report_metrics = report_metrics
        self._lock = threading.Lock()

    def add(self, ab: ArtifactBins) -> None:
        with self._lock:
            self.by_artifact[ab.artifact] = ab

    def collect(self):
        live = CounterMetricFamily(
            "volspike_consumer_feature_bin",
            "Live feature values (and predictions) per reference bin of the artifact.",
            labels=["artifact", "feature", "bin"],
        )
        ref = GaugeMetricFamily(
            "volspike_drift_reference_share",
            "Share of the artifact's reference sample in each bin (from its manifest).",
            labels=["artifact", "feature", "bin"],
        )
        with self._lock:
            items = list(self.by_artifact.values())
        for ab in items:
            pairs = [*zip(ab.names, ab.bins, ab.counts, strict=True)]
            pairs.append((PREDICTION, ab.pred_bins, ab.pred_counts))
            for name, b, counts in pairs:
                for label, c, share in zip(
                    b.labels(), counts.tolist(), b.shares.tolist(), strict=True
                ):
                    live.add_metric([ab.artifact, name, label], c)
                    ref.add_metric([ab.artifact, name, label], share)
        yield live
        yield ref
        yield from self._report()

    def _report(self):
        """The last `make drift` report's summary (a small JSON file it writes)."""
        if self.report_metrics is None or not self.report_metrics.exists():
            return
        try:
            d = json.loads(self.report_metrics.read_text())
        except (OSError, ValueError):
            return
        ts = GaugeMetricFamily(
            "volspike_drift_report_timestamp_seconds", "When the last drift report was made."
        )
        ts.add_metric([], float(d["timestamp"]))
        share = GaugeMetricFamily(
            "volspike_drift_report_drifted_share",
            "Share of features the last drift report found drifted.",
            labels=["artifact"],
        )
        share.add_metric([d["artifact"]], float(d["drifted_share"]))
        yield ts
        yield share


class LiveSample:
    """The latest ``rows`` scored feature rows and their predictions, in a ring; written to
    ``folder/<name>.npz`` (atomically) every ``every_s`` seconds for the drift report."""

    def __init__(self, folder: Path, rows: int, every_s: float, name: str) -> None:
        self.folder, self.every_s = folder, every_s
        self.path = folder / f"{name}.npz"
        self.x: np.ndarray | None = None
        self.p = np.empty(rows, np.float32)
        self.n = self.pos = 0
        self.names: tuple[str, ...] = ()
        self.artifact = ""
        self._next = time.monotonic() + every_s

    def add(self, artifact: str, names: tuple[str, ...], x: np.ndarray, probs: np.ndarray) -> None:
        cap = len(self.p)
        if self.x is None or names != self.names or artifact != self.artifact:
            self.x = np.empty((cap, x.shape[1]), np.float32)
            self.n = self.pos = 0
            self.names, self.artifact = names, artifact
        take = min(len(x), cap)
        x, probs = x[-take:], probs[-take:]
        end = self.pos + take
        first = min(end, cap) - self.pos
        self.x[self.pos : self.pos + first] = x[:first]
        self.p[self.pos : self.pos + first] = probs[:first]
        if first < take:
            self.x[: take - first] = x[first:]
            self.p[: take - first] = probs[first:]
        self.pos = end % cap
        self.n = min(self.n + take, cap)

    def maybe_flush(self) -> None:
        if time.monotonic() >= self._next:
            self.flush()

    def flush(self) -> None:
        self._next = time.monotonic() + self.every_s
        if self.x is None or self.n == 0:
            return
        try:
            self._write()
        except OSError:  # disk full, folder gone: the sample waits, the answers do not
            logger.exception("writing the live sample %s failed", self.path)

    def _write(self) -> None:
        assert self.x is not None  # flush() checked
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            x=self.x[: self.n],
            p=self.p[: self.n],
            names=np.array(self.names),
            artifact=np.array(self.artifact),
            written=np.array(time.time()),
        )
        tmp.replace(self.path)  # the report never reads half a file
