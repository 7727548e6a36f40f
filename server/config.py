"""Server settings: defaults < TOML file < ``VOLSPIKE_*`` environment < command line."""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "VOLSPIKE_"
DEFAULT_MODEL_NAME = "volspike"


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    """Address the gRPC server binds (loopback by default)."""
    port: int = 50051
    """gRPC port; several worker processes share it with SO_REUSEPORT."""
    metrics_port: int = 8000
    """Prometheus /metrics port of worker 0; worker i uses metrics_port + i."""
    models_dir: Path = ROOT / "compiled_models"
    """Folder holding one sub-folder per compiled artifact."""
    model_config: Path = ROOT / "config" / "model.toml"
    """TOML file whose ``artifact`` key names the active artifact; watched for changes."""
    workers: int = 1
    """Server processes sharing the port (use 2 on this 2-core machine)."""
    max_rows: int = 100_000
    """Most rows one Predict/ModelInfer call may carry (more -> RESOURCE_EXHAUSTED)."""
    max_message_bytes: int = 64 * 1024 * 1024
    """Largest request accepted by gRPC (more -> RESOURCE_EXHAUSTED)."""
    threads: int = 16
    """gRPC handler threads per worker (the native predict releases the GIL)."""
    reload_poll_seconds: float = 1.0
    """How often the model config file's mtime is checked."""
    grace_seconds: float = 10.0
    """On SIGTERM, how long in-flight calls may take to finish."""
    max_connection_age_seconds: float = 60.0
    """A client connection is closed (GOAWAY; its calls finish within grace_seconds) after
    this long, so clients balancing over replicas re-resolve and new replicas get work."""
    pid_file: Path | None = None
    """Where the supervising process writes its PID (for ``make rollback``)."""

    @classmethod
    def load(cls, path: Path | None = None, **overrides: object) -> Settings:
        values: dict[str, Any] = {}  # TOML, environment and command-line values
        if path is not None:
            values.update(tomllib.loads(Path(path).read_text()))
        for f in fields(cls):
            env = os.environ.get(ENV_PREFIX + f.name.upper())
            if env is not None:
                values[f.name] = env
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **{k: _coerce(k, v) for k, v in values.items()})


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if value is None or kind in ("str",):
        return value
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return Path(str(value))


@dataclass(frozen=True)
class ModelConfig:
    """The model config file (``config/model.toml``)."""

    artifact: str
    """The active artifact: what a call that names no model (or ``model_name``) gets."""
    servable: tuple[str, ...] = ()
    """Further artifacts loaded (verified and warmed) beside the active one and answerable
    by name. Nothing else is ever loaded because a client named it."""
    model_name: str = DEFAULT_MODEL_NAME
    """The served model's stable name: KServe clients name it (and pin an artifact with
    ``model_version``) while the artifact behind it changes; ModelInfo reports it."""


def read_model_config(model_config: Path) -> ModelConfig:
    """Parse the model config; a half-written or wrong file raises ``ValueError``."""
    data = tomllib.loads(Path(model_config).read_text())
    name = data.get("artifact")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{model_config}: 'artifact' must name a compiled artifact")
    servable = data.get("servable", [])
    if not isinstance(servable, list) or not all(isinstance(s, str) and s for s in servable):
        raise ValueError(f"{model_config}: 'servable' must be a list of artifact names")
    model_name = data.get("model_name", DEFAULT_MODEL_NAME)
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"{model_config}: 'model_name' must be a non-empty string")
    servable = list(dict.fromkeys(s for s in servable if s != name))
    if model_name == name or model_name in servable:
        raise ValueError(
            f"{model_config}: 'model_name' {json.dumps(model_name)} is an artifact of this config: "
            "a call by that name could not reach it"
        )
    return ModelConfig(name, tuple(servable), model_name)


def active_artifact(model_config: Path) -> str:
    """The artifact named by the model config file."""
    return read_model_config(model_config).artifact
