"""Drift observation: each published batch is counted into its artifact's reference bins
(from the manifest ModelInfo returned) and the live sample. A side line: whatever goes wrong
here costs no answer (counted, logged, and the artifact's bins are tried again a minute
later)."""

from __future__ import annotations

import json
import logging
import time

import numpy as np

from consumer.batcher import Batch
from consumer.drift import ArtifactBins, LiveSample
from consumer.metrics import ConsumerMetrics
from consumer.model_info import ModelInfos, remember
from market.features import N_FEATURES
from proto.volatility.v1 import predictor_pb2 as pb

logger = logging.getLogger("consumer.pipeline")  # one name for the consumer's log lines


class DriftWatch:
    def __init__(self, infos: ModelInfos, sample: LiveSample, metrics: ConsumerMetrics) -> None:
        self.infos, self.sample, self.metrics = infos, sample, metrics
        self.retry: dict[str, float] = {}  # artifact -> when its bins are tried again

    def observe(self, b: Batch, resp: pb.PredictResponse) -> None:
        try:
            ab = self._artifact_bins(resp.artifact)
            if ab is None:
                return
            assert b.request is not None  # a batch with scored rows has a request
            x = np.frombuffer(b.request.packed.float32_le, np.float32).reshape(-1, N_FEATURES)
            probs = np.asarray(resp.probabilities, np.float32)
            ab.observe(x, probs)
            self.sample.add(ab.artifact, ab.names, x, probs)
        except Exception:
            self.metrics.errors.labels("drift").inc()
            logger.exception("drift bins of %s failed; retrying in 60 s", resp.artifact[:64])
            self.metrics.drift.discard(resp.artifact)
            remember(self.retry, resp.artifact, time.monotonic() + 60)

    def _artifact_bins(self, artifact: str) -> ArtifactBins | None:
        """The artifact's reference bins, from its manifest (the ModelInfo the schema check
        just confirmed: never asked here); a manifest without usable bins is tried again a
        minute later. Either costs no answer."""
        ab = self.metrics.drift.by_artifact.get(artifact)
        if ab is not None:
            return ab
        if time.monotonic() < self.retry.get(artifact, 0.0):
            return None
        info = self.infos.fresh(artifact)
        if info is None:
            return None
        try:
            ab = ArtifactBins(artifact, json.loads(info.manifest_json))
        except Exception as exc:  # any manifest: never fatal
            logger.warning("no drift bins for %s (%s); retrying in 60 s", artifact, exc)
            remember(self.retry, artifact, time.monotonic() + 60)
            return None
        self.metrics.drift.add(ab)
        return ab
