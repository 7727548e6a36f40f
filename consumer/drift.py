"""Continuous drift, counted where the features are made: each micro-batch's feature values
and predictions go into the active artifact's reference bins (from its manifest, asked once
per artifact with ModelInfo), one numpy pass per feature, and leave as Prometheus counters;
recording rules turn them into each feature's PSI (observability/rules.py). A uniform sample of
the last 20 minutes' rows, with the artifact that scored each, is written now and then for the
Evidently report (`make drift`).
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

from compiled_models.manifest_schema_gen import MANIFEST_DRIFT_MAX_EDGES, MANIFEST_MAX_FEATURES
from drift import bins as db

logger = logging.getLogger(__name__)
PREDICTION = "prediction"  # the feature label of the predicted probability's bins
MAX_ARTIFACTS = 4
"""Artifacts whose bins are exported at once: a new one evicts the one seen longest ago, so
the series count stays bounded (at most 4 x 257 x 34) however many rollbacks there were."""


class ArtifactBins:
    """One artifact's reference bins and the live counts against them."""

    def __init__(self, artifact: str, manifest: object) -> None:
        """Checks what it reads as the manifest schema says (proto/contract.toml): the
        server that sent it may be of another version; anything else is a ValueError."""
        spec = manifest.get("drift") if isinstance(manifest, dict) else None
        names = manifest.get("feature_names") if isinstance(manifest, dict) else None
        if (
            not isinstance(names, list)
            or not 0 < len(names) <= MANIFEST_MAX_FEATURES
            or not all(isinstance(n, str) for n in names)
            or not isinstance(spec, dict)
            or not isinstance(spec.get("features"), dict)
            or set(spec["features"]) != set(names)
            or "prediction" not in spec
        ):
            raise ValueError(
                f"artifact {artifact[:64]}: manifest has no drift bins for its features"
            )
        self.artifact = artifact
        self.names = tuple(names)
        self.bins = [_bins(spec["features"][n]) for n in names]
        self.pred_bins = _bins(spec["prediction"])
        if not all(np.isfinite(b.edges).all() for b in [*self.bins, self.pred_bins]):
            raise ValueError(f"artifact {artifact[:64]}: drift bin edges must be finite")
        self.counts = [np.zeros(b.size, np.int64) for b in self.bins]
        self.pred_counts = np.zeros(self.pred_bins.size, np.int64)
        # Every column's edges in one sorted array of complex keys (column + edge * 1j,
        # ordered by column, then edge), so one searchsorted bins a whole batch: numpy lets
        # the GIL go in each searchsorted, and on a busy machine each time costs the loop a
        # wait for it (16 a batch were 4-5 % of the draining consumer's time).
        cols = [*self.bins, self.pred_bins]
        self._keys = np.concatenate([j + 1j * b.edges for j, b in enumerate(cols)])
        n_edges = np.array([len(b.edges) for b in cols])
        self._edge_start = np.concatenate([[0], np.cumsum(n_edges)[:-1]])
        sizes = np.array([b.size for b in cols])
        self._bin_start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self._nan_bin = self._bin_start + sizes - 1
        self._n_bins = int(sizes.sum())

    def observe(self, x: np.ndarray, probs: np.ndarray) -> None:
        """Count a batch (rows of the artifact's features, and their probabilities) into
        the bins: ``drift.bins.count`` for every column, in one pass."""
        values = np.column_stack([x[:, : len(self.counts)], probs]).astype(np.float64)
        cols = np.arange(values.shape[1])
        keys = np.empty(values.shape, np.complex128)  # not cols + 1j * values: 1j * inf
        keys.real, keys.imag = cols, values  # has a NaN real part
        idx = np.searchsorted(self._keys, keys, side="left")
        idx += self._bin_start - self._edge_start  # (e_{i-1}, e_i] -> i, in its column
        nan = np.isnan(values)
        idx[nan] = np.broadcast_to(self._nan_bin, idx.shape)[nan]
        counts = np.bincount(idx.ravel(), minlength=self._n_bins)
        for j, c in enumerate(self.counts):
            c += counts[self._bin_start[j] : self._bin_start[j] + len(c)]
        j = len(self.counts)
        self.pred_counts += counts[self._bin_start[j] :]


def _bins(d: object) -> db.Bins:
    if (
        not isinstance(d, dict)
        or not isinstance(d.get("edges"), list)
        or not isinstance(d.get("shares"), list)
        or len(d["edges"]) > MANIFEST_DRIFT_MAX_EDGES
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in d["edges"])
        or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in d["shares"])
    ):
        raise ValueError(
            f"drift bins must be {{edges: 0-{MANIFEST_DRIFT_MAX_EDGES} numbers, shares: numbers}}"
        )
    return db.Bins.from_json(d)


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
            self.by_artifact.pop(ab.artifact, None)
            self.by_artifact[ab.artifact] = ab  # the newest last
            while len(self.by_artifact) > MAX_ARTIFACTS:
                del self.by_artifact[next(iter(self.by_artifact))]

    def discard(self, artifact: str) -> None:
        with self._lock:
            self.by_artifact.pop(artifact, None)

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
        """The last `make drift` report's summary (a small JSON file it writes). A file that
        is not what the report writes exports nothing: it must never fail the scrape."""
        if self.report_metrics is None or not self.report_metrics.exists():
            return
        try:
            d = json.loads(self.report_metrics.read_text())
            stamp = float(d["timestamp"])
            judged = d.get("artifacts") or {d["artifact"]: d}  # every artifact it judged
            shares = [(str(a)[:64], float(r["drifted_share"])) for a, r in judged.items()]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            logger.warning("drift report summary %s is unreadable", self.report_metrics)
            return
        ts = GaugeMetricFamily(
            "volspike_drift_report_timestamp_seconds", "When the last drift report was made."
        )
        ts.add_metric([], stamp)
        share = GaugeMetricFamily(
            "volspike_drift_report_drifted_share",
            "Share of features the last drift report found drifted, by artifact judged.",
            labels=["artifact"],
        )
        for artifact, v in shares:
            share.add_metric([artifact], v)
        yield ts
        yield share


MAX_SAMPLED_ARTIFACTS = 16
"""Distinct artifacts one live sample records (normally one or two: the active one and the
one before a rollback)."""


class _Stratum:
    """One slice of the window: a uniform reservoir (Algorithm R) of the rows scored in it."""

    __slots__ = ("art", "n", "p", "seen", "x")

    def __init__(self, cap: int, width: int) -> None:
        self.x = np.empty((cap, width), np.float32)
        self.p = np.empty(cap, np.float32)
        self.art = np.empty(cap, np.int32)  # index into LiveSample.artifacts
        self.n = self.seen = 0

    def add(self, x: np.ndarray, p: np.ndarray, art: int, rng: np.random.Generator) -> None:
        cap = len(self.p)
        free = min(cap - self.n, len(x))
        if free:
            self.x[self.n : self.n + free] = x[:free]
            self.p[self.n : self.n + free] = p[:free]
            self.art[self.n : self.n + free] = art
            self.n += free
        rest = len(x) - free
        if rest:  # row i (the seen-th row overall) replaces a random slot with prob cap/seen
            seen = self.seen + free + np.arange(1, rest + 1)
            j = (rng.random(rest) * seen).astype(np.int64)
            keep = j < cap
            self.x[j[keep]] = x[free:][keep]
            self.p[j[keep]] = p[free:][keep]
            self.art[j[keep]] = art
        self.seen += len(x)


class LiveSample:
    """A uniform sample of the rows scored over the last ``window_s`` seconds, with the
    artifact that scored each row; written to ``folder/<name>.npz`` (atomically) every
    ``every_s`` seconds for the drift report (`make drift`).

    The window is cut into ``strata`` slices, each a reservoir of up to ``rows`` rows; a
    written sample draws from each slice in proportion to the rows it saw, so it is uniform
    over the window whatever the rate did, and slices older than the window are dropped.
    (Before: the last ``rows`` consecutive rows, ~33 s at 300 ticks/s: the features of
    neighbouring ticks share their windows, so a stationary stream read as drifted.)"""

    def __init__(
        self,
        folder: Path,
        rows: int,
        every_s: float,
        name: str,
        window_s: float = 3600.0,
        strata: int = 20,
        clock=time.time,
        seed: int | None = None,
    ) -> None:
        self.folder, self.every_s, self.rows = folder, every_s, rows
        self.window_s, self.slice_s = window_s, window_s / strata
        self.path = folder / f"{name}.npz"
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        self.names: tuple[str, ...] = ()
        self.artifacts: list[str] = []
        self.slices: dict[int, _Stratum] = {}
        self._next = time.monotonic() + every_s

    def add(self, artifact: str, names: tuple[str, ...], x: np.ndarray, probs: np.ndarray) -> None:
        if names != self.names:  # another feature list: rows are not comparable
            self.names, self.artifacts, self.slices = names, [], {}
        if artifact not in self.artifacts:
            if len(self.artifacts) >= MAX_SAMPLED_ARTIFACTS:  # a server naming a new one
                return  # in every answer: its rows are not sampled (the pipeline logs it)
            self.artifacts.append(artifact)
        k = int(self.clock() // self.slice_s)
        sl = self.slices.get(k)
        if sl is None:
            self._expire(k)
            sl = self.slices[k] = _Stratum(self.rows, x.shape[1])
        sl.add(x, probs, self.artifacts.index(artifact), self.rng)

    def _expire(self, now_slice: int) -> None:
        oldest = now_slice - round(self.window_s / self.slice_s) + 1
        for k in [k for k in self.slices if k < oldest]:
            del self.slices[k]

    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """(x, probabilities, artifact per row, rows seen in the window)."""
        self._expire(int(self.clock() // self.slice_s))
        live = [sl for sl in self.slices.values() if sl.n]
        seen = sum(sl.seen for sl in live)
        width = len(self.names)
        if not live:
            return np.empty((0, width), np.float32), np.empty(0, np.float32), np.empty(0, str), 0
        target = min(self.rows, sum(sl.n for sl in live))
        # each slice's share of the target, largest remainders first: exactly ``target``
        # rows (rounding each share on its own wrote up to strata / 2 more than ``rows``)
        quota = np.array([target * sl.seen / seen for sl in live])
        held = np.array([sl.n for sl in live])
        ks = np.minimum(held, np.floor(quota).astype(np.int64))
        frac = np.where(ks < held, quota - np.floor(quota), -1.0)  # a full slice gets none
        for i in np.argsort(-frac, kind="stable")[: max(0, target - int(ks.sum()))]:
            ks[i] += frac[i] >= 0
        xs, ps, arts = [], [], []
        for sl, k in zip(live, ks, strict=True):
            pick = self.rng.choice(sl.n, k, replace=False) if k < sl.n else np.arange(sl.n)
            xs.append(sl.x[pick])
            ps.append(sl.p[pick])
            arts.append(sl.art[pick])
        names = np.array(self.artifacts)
        return np.concatenate(xs), np.concatenate(ps), names[np.concatenate(arts)], seen

    def maybe_flush(self) -> None:
        if time.monotonic() >= self._next:
            self.flush()

    def flush(self) -> None:
        self._next = time.monotonic() + self.every_s
        if not any(sl.n for sl in self.slices.values()):
            return
        try:
            self._write()
        except Exception:  # disk full, folder gone, a bug: the sample waits, answers do not
            logger.exception("writing the live sample %s failed", self.path)

    def _write(self) -> None:
        x, p, artifacts, seen = self.sample()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".tmp{os.getpid()}.npz")
        np.savez(
            tmp,
            x=x,
            p=p,
            names=np.array(self.names),
            artifacts=artifacts,
            window_s=np.array(self.window_s),
            seen=np.array(seen),
            written=np.array(time.time()),
        )
        tmp.replace(self.path)  # the report never reads half a file
