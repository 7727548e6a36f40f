"""The model config reader (config/model.toml; the live copy is .run/model.toml under make):
the one Python reader, used by the server, make rollback and the drift report. The native
server's (server/native/internal/config/config.go ReadModelConfig) gives the same result or
the same error for every case of config/testdata/model_config_cases.json. Standard library
only."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_NAME = "volspike"
KEYS = ("artifact", "servable", "model_name")


@dataclass(frozen=True)
class ModelConfig:
    """The model config file."""

    artifact: str
    """The active artifact: what a call that names no model (or ``model_name``) gets."""
    servable: tuple[str, ...] = ()
    """Further artifacts loaded (verified and warmed) beside the active one and answerable
    by name. Nothing else is ever loaded because a client named it."""
    model_name: str = DEFAULT_MODEL_NAME
    """The served model's stable name: KServe clients name it (and pin an artifact with
    ``model_version``) while the artifact behind it changes; ModelInfo reports it."""


def parse_model_config(text: str, where: str) -> ModelConfig:
    """A model config's text; a half-written or wrong one raises ``ValueError`` starting
    with ``where:``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: not TOML: {exc}") from None
    for key in data:
        if key not in KEYS:  # a typo (servables = ...) would silently serve less
            raise ValueError(f"{where}: {key!r} is not a model config key {list(KEYS)}")
    name = data.get("artifact")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: 'artifact' must name a compiled artifact")
    servable = data.get("servable", [])
    if not isinstance(servable, list) or not all(isinstance(s, str) and s for s in servable):
        raise ValueError(f"{where}: 'servable' must be a list of artifact names")
    model_name = data.get("model_name", DEFAULT_MODEL_NAME)
    if not isinstance(model_name, str) or not model_name:
        raise ValueError(f"{where}: 'model_name' must be a non-empty string")
    servable = list(dict.fromkeys(s for s in servable if s != name))
    if model_name == name or model_name in servable:
        raise ValueError(
            f"{where}: 'model_name' {json.dumps(model_name, ensure_ascii=False)} is an artifact "
            "of this config: a call by that name could not reach it"
        )
    return ModelConfig(name, tuple(servable), model_name)


def read_model_config(model_config: Path) -> ModelConfig:
    """Parse the model config file; a half-written or wrong file raises ``ValueError``
    (an unreadable one ``OSError``)."""
    return parse_model_config(Path(model_config).read_text(), str(model_config))


def active_artifact(model_config: Path) -> str:
    """The artifact named by the model config file."""
    return read_model_config(model_config).artifact
