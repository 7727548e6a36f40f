"""Which artifact serves: verified loading, warm-up and atomic switching."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from compiled_models.manifest import MANIFEST_FILE, REFERENCE_FILE
from compiled_models.runtime import ArtifactError, CompiledModel
from server.errors import NotFound, Unavailable
from server.metrics import ServerMetrics

logger = logging.getLogger(__name__)


class ModelRegistry:
    """Holds the active model. Readers take ``self.active`` (one attribute read, atomic
    under the GIL) and keep using that object for the whole call, so a switch never
    mixes two artifacts inside one response."""

    def __init__(self, models_dir: Path, metrics: ServerMetrics) -> None:
        self.models_dir = Path(models_dir)
        self.metrics = metrics
        self.active: CompiledModel | None = None
        self.loaded_at: dict[str, float] = {}
        self._others: dict[str, CompiledModel] = {}
        self._lock = threading.Lock()

    def available(self) -> list[str]:
        return sorted(p.parent.name for p in self.models_dir.glob(f"*/{MANIFEST_FILE}"))

    def get(self, name: str = "") -> CompiledModel:
        """The active model for ``""``, else the named artifact (loaded on first use)."""
        active = self.active
        if not name or (active is not None and name == active.name):
            if active is None:
                raise Unavailable("no model is loaded yet; retry when health is SERVING")
            return active
        model = self._others.get(name)
        if model is None:
            if name not in self.available():
                raise NotFound(f"model {name!r} not found; available: {self.available()}")
            with self._lock:
                model = self._others.get(name) or self._load(name)
                self._others[name] = model
        return model

    def activate(self, name: str) -> CompiledModel:
        """Verify, load and warm ``name``, then make it active. On any failure the old
        model keeps serving and the error is raised (and counted)."""
        with self._lock:
            try:
                model = self._load(name)
            except Exception:
                self.metrics.reloads.labels("failed").inc()
                raise
            old = self.active
            self.active = model
            self._others.pop(name, None)
            if old is not None and old.name != name:
                self._others[old.name] = old  # stays warm for a quick switch back
        self.metrics.reloads.labels("ok").inc()
        self.metrics.set_active(model.name, model.sha256)
        logger.info("active model is now %s (sha256 %s)", model.name, model.sha256[:12])
        return model

    def _load(self, name: str) -> CompiledModel:
        t0 = time.perf_counter()
        folder = self.models_dir / name
        try:
            if not (folder / MANIFEST_FILE).exists():
                raise ArtifactError(f"artifact {name}: no manifest in {folder}")
            model = CompiledModel(folder)
            _warm_up(model, folder)
        except Exception:
            self.metrics.model_load.labels(name, "failed").observe(time.perf_counter() - t0)
            logger.exception("loading artifact %s failed", name)
            raise
        self.metrics.model_load.labels(name, "ok").observe(time.perf_counter() - t0)
        self.loaded_at[name] = time.time()
        return model


def _warm_up(model: CompiledModel, folder: Path) -> None:
    """Run the reference sample through the model and check the answers are sane."""
    ref = pd.read_parquet(folder / REFERENCE_FILE).to_numpy(np.float32)
    probs = model.predict(np.ascontiguousarray(ref))
    if not np.all((probs >= 0.0) & (probs <= 1.0)):
        raise ArtifactError(f"artifact {model.name}: warm-up produced out-of-range output")
