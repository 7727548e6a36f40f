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
from server import contract_gen as contract
from server.codec import cut, quoted
from server.config import DEFAULT_MODEL_NAME
from server.errors import ServiceError
from server.metrics import ServerMetrics

logger = logging.getLogger(__name__)


class ModelRegistry:
    """Holds the active model and the servable ones. Readers take ``self.active`` (one
    attribute read, atomic under the GIL) and keep using that object for the whole call,
    so a switch never mixes two artifacts inside one response.

    Artifacts are loaded only by an operator action (start-up, a config change, SIGHUP):
    a call that names an artifact gets it only if the config lists it as servable and it
    loaded. A library is native code; loading one because a client asked would let any
    client run whatever sits in the models folder."""

    def __init__(self, models_dir: Path, metrics: ServerMetrics) -> None:
        self.models_dir = Path(models_dir)
        self.metrics = metrics
        self.active: CompiledModel | None = None
        self.loaded_at: dict[str, float] = {}
        self._others: dict[str, CompiledModel] = {}  # servable, loaded; replaced, never mutated
        self._failed: dict[str, str] = {}  # servable whose load failed -> why
        self.schema: tuple[str, tuple[str, ...]] | None = None  # (first artifact, its features)
        self.model_name = DEFAULT_MODEL_NAME
        """The served model's stable name (config ``model_name``): a call naming it (or no
        model) gets the active artifact, or the version (artifact) it pins."""
        self.thresholds: dict[str, float] = {}
        """Config ``decision_threshold``: per artifact, the threshold that replaces its
        manifest's. A call reads ``model.threshold`` once and uses it for the whole answer."""
        self._lock = threading.Lock()

    def available(self) -> list[str]:
        """Artifacts on disk an operator can switch to."""
        return sorted(p.parent.name for p in self.models_dir.glob(f"*/{MANIFEST_FILE}"))

    def servable(self) -> list[str]:
        active = self.active
        return sorted({*self._others, *([active.name] if active is not None else [])})

    def resolve(
        self, name: str = "", version: str = "", served: str | None = None
    ) -> CompiledModel:
        """The artifact a call means. ``name`` "" or the model name: the active artifact,
        or the servable one ``version`` names. Otherwise ``name`` is an artifact's name
        (``get``), and a ``version`` other than that name is not served. Never loads.
        ``served``: the model name the caller already read (one read per call, as a reload
        may change it)."""
        model_name = self.model_name if served is None else served
        if name and name != model_name:
            model = self.get(name)
            if version and version != model.name:
                raise self._version_not_served(name, version)
            return model
        try:  # "" is the active artifact; a version, the artifact of that name
            return self.get(version)
        except ServiceError as exc:
            if exc.kind != "NotFound":  # no model yet, or a servable one that failed: as is
                raise
        raise self._version_not_served(model_name, version)

    def _version_not_served(self, name: str, version: str) -> ServiceError:
        return contract.version_not_served(
            name=cut(name, contract.MODEL_CHARS_IN_ERROR),
            version=cut(version, contract.MODEL_CHARS_IN_ERROR),
            servable=quoted(self.servable()),
        )

    def get(self, name: str = "") -> CompiledModel:
        """The active model for ``""``, else the named servable artifact. Never loads."""
        active = self.active
        if not name or (active is not None and name == active.name):
            if active is None:
                raise contract.no_model()
            return active
        model = self._others.get(name)
        if model is not None:
            return model
        failed = self._failed.get(name)
        if failed is not None:
            raise contract.artifact_unavailable(name=name, reason=failed)
        raise contract.not_served(
            name=cut(name, contract.MODEL_CHARS_IN_ERROR), servable=quoted(self.servable())
        )

    def configure(
        self,
        artifact: str,
        servable: tuple[str, ...],
        model_name: str = DEFAULT_MODEL_NAME,
        thresholds: dict[str, float] | None = None,
    ) -> None:
        """Make ``artifact`` active (if it is not) and load the servable ones not loaded
        yet; drop those no longer listed. A failed activation leaves the old model
        active and raises after the servable set is settled. ``model_name``: the served
        model's name from now on; ``thresholds``: the config's decision thresholds (an
        artifact not named keeps its manifest's), applied to a new model before it serves
        and to loaded ones in place."""
        self.model_name = model_name
        self.thresholds = dict(thresholds or {})
        error: Exception | None = None
        previous = active = self.active
        if active is None or active.name != artifact:
            try:
                self.activate(artifact)
            except Exception as exc:
                error = exc
        with self._lock:
            active = self.active
            keep = {n: m for n, m in self._others.items() if n in servable}
            if previous is not None and previous is not active and previous.name in servable:
                keep.setdefault(previous.name, previous)  # still answerable by name
            failed: dict[str, str] = {}
            if error is not None:  # asked for by name, it says why it is not served
                failed[artifact] = str(error)
            for name in servable:
                if name in keep or (active is not None and name == active.name):
                    continue
                if active is None:
                    failed[name] = contract.NO_SCHEMA_YET
                    continue
                try:
                    keep[name] = self._load(name)
                except Exception as exc:
                    failed[name] = str(exc)
            self._others, self._failed = keep, failed
            for model in (*keep.values(), *([active] if active is not None else [])):
                self._set_threshold(model)
        if error is not None:
            raise error

    def _set_threshold(self, model: CompiledModel) -> None:
        """The config's threshold for ``model``, else its manifest's."""
        want = self.thresholds.get(model.name, model.manifest.decision_threshold)
        if model.threshold != want:
            logger.info(
                "decision threshold of %s is now %s (manifest %s)",
                model.name,
                want,
                model.manifest.decision_threshold,
            )
            model.threshold = want

    def activate(self, name: str) -> CompiledModel:
        """Verify, load and warm ``name``, then make it active. On any failure the old
        model keeps serving and the error is raised (and counted)."""
        with self._lock:
            try:
                model = self._load(name)
            except Exception:
                self.metrics.reloads.labels(contract.RESULT_FAILED).inc()
                raise
            self.active = model
            if self.schema is None:
                self.schema = (model.name, model.manifest.feature_names)
        self.metrics.reloads.labels(contract.RESULT_OK).inc()
        self.metrics.set_active(model.name, model.sha256)
        logger.info("active model is now %s (sha256 %s)", model.name, model.sha256[:12])
        return model

    def _load(self, name: str) -> CompiledModel:
        t0 = time.perf_counter()
        folder = self.models_dir / name
        try:
            if "/" in name or name in ("", ".", ".."):
                raise ArtifactError(f"artifact name {name!r} is not a folder name")
            if not (folder / MANIFEST_FILE).exists():
                raise ArtifactError(f"artifact {name}: no manifest in {folder}")
            model = CompiledModel(folder)  # checks the manifest against its schema first
            self._check_schema(model)
            _warm_up(model, folder)
            self._set_threshold(model)
        except Exception:
            self.metrics.model_load.labels(name, contract.RESULT_FAILED).observe(
                time.perf_counter() - t0
            )
            logger.exception("loading artifact %s failed", name)
            raise
        self.metrics.model_load.labels(name, contract.RESULT_OK).observe(time.perf_counter() - t0)
        self.loaded_at[name] = time.time()
        return model

    def _check_schema(self, model: CompiledModel) -> None:
        """One feature schema per process, its first active artifact's: packed rows carry
        no names, so a switch to another list of the same width would silently change what
        a running client's columns mean."""
        if self.schema is None or model.manifest.feature_names == self.schema[1]:
            return
        first, names = self.schema
        raise ArtifactError(
            f"artifact {model.name}: features {quoted(list(model.manifest.feature_names))} "
            f"differ from {quoted(list(names))}, the schema this server serves (from {first}); "
            "restart the server to serve another schema"
        )


def _warm_up(model: CompiledModel, folder: Path) -> None:
    """Run the reference sample through the model and check the answers are sane."""
    ref = pd.read_parquet(folder / REFERENCE_FILE).to_numpy(np.float32)
    probs = model.predict(np.ascontiguousarray(ref))
    if not np.all((probs >= 0.0) & (probs <= 1.0)):
        raise ArtifactError(f"artifact {model.name}: warm-up produced out-of-range output")
