"""The manifest that travels with every compiled artifact."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MANIFEST_FILE = "manifest.json"
LIBRARY_FILE = "model.so"
XGB_MODEL_FILE = "model.json"
REFERENCE_FILE = "reference.parquet"
REFERENCE_RAW_FILE = "reference.f32"  # the same rows as little-endian float32 (native server)


@dataclass(frozen=True)
class Manifest:
    name: str
    description: str
    created: str
    feature_names: tuple[str, ...]
    decision_threshold: float  # probability >= threshold -> label 1
    library: str
    library_sha256: str
    versions: dict
    compile_options: dict
    label: dict
    data_period: dict
    metrics: dict
    params: dict = field(default_factory=dict)
    drift: dict = field(default_factory=dict)
    """Reference bins for drift (drift/bins.py): {"features": {name: bins}, "prediction":
    bins}, cut at the deciles of the reference sample and of its predictions."""
    calibration: dict = field(default_factory=dict)
    """{} (output is the raw tree probability) or {"method": "isotonic", "x": [...], "y":
    [...]}: compiled_models/calibration.py. decision_threshold is on the calibrated scale."""
    trained_on: str = ""
    """One sentence saying what the artifact was trained on."""

    def write(self, folder: Path) -> None:
        """Strict JSON: a metric that is undefined (NaN: e.g. PR-AUC on a block without
        positives) is written as null, never as a bare NaN other parsers refuse."""
        text = json.dumps(_nan_to_none(asdict(self)), indent=2, sort_keys=True, allow_nan=False)
        (folder / MANIFEST_FILE).write_text(text + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        return cls.parse((folder / MANIFEST_FILE).read_text())

    @classmethod
    def parse(cls, text: str) -> Manifest:
        raw = json.loads(text)
        raw["feature_names"] = tuple(raw["feature_names"])
        return cls(**raw)


def _nan_to_none(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_nan_to_none(x) for x in v]
    return v


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
