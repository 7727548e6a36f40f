"""The manifest that travels with every compiled artifact."""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
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
    feature_names: tuple[str, ...]
    decision_threshold: float  # probability >= threshold -> label 1
    library: str
    library_sha256: str
    description: str = ""
    created: str = ""
    versions: dict = field(default_factory=dict)
    compile_options: dict = field(default_factory=dict)
    label: dict = field(default_factory=dict)
    data_period: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
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
        """Strict JSON (no NaN or Infinity)."""
        return cls.from_raw(json.loads(text, parse_constant=refuse_constant))

    @classmethod
    def from_raw(cls, raw: dict) -> Manifest:
        """Unknown fields are ignored, missing metadata takes its default."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in raw.items() if k in known}
        kept["feature_names"] = tuple(kept["feature_names"])
        return cls(**kept)


_KINDS = {
    "string": "a string",
    "names": "a non-empty list of distinct strings",
    "probability": "a number in [0, 1]",
    "sha256": "64 lowercase hex digits",
    "object": "an object",
}


def check_fields(raw: object, checked: tuple[tuple[str, str, bool], ...]) -> None:
    if not isinstance(raw, dict):
        raise ValueError("manifest is not a JSON object")
    for name, kind, required in checked:
        if name not in raw:
            if required:
                raise ValueError(f"manifest field '{name}' is missing")
            continue
        v = raw[name]
        ok = {
            "string": isinstance(v, str),
            "names": isinstance(v, list)
            and len(v) > 0
            and all(isinstance(x, str) for x in v)
            and len(set(v)) == len(v),
            "probability": isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1,
            "sha256": isinstance(v, str) and re.fullmatch("[0-9a-f]{64}", v) is not None,
            "object": isinstance(v, dict),
        }[kind]
        if not ok:
            raise ValueError(f"manifest field '{name}' must be {_KINDS[kind]}")


def refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


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
