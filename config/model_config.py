"""The model config reader (config/model.toml; the live copy is .run/model.toml under make):
the one Python reader, used by the server, make rollback and the drift report. The native
server's (server/native/internal/config/config.go ReadModelConfig) gives the same result or
the same error for every case of config/testdata/model_config_cases.json. Standard library
only."""

from __future__ import annotations

import json
import math
import os
import struct
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MODEL_NAME = "volspike"
KEYS = ("artifact", "servable", "model_name", "decision_threshold")


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
    decision_threshold: tuple[tuple[str, float], ...] = ()
    """Per artifact (sorted by name), the decision threshold that replaces its manifest's:
    a refit on recent live scores (``make refit-threshold``). An entry may name an artifact
    this config does not serve (it applies when a rollback serves that artifact again)."""

    def threshold_of(self, artifact: str) -> float | None:
        """The configured threshold of ``artifact``; None: its manifest's applies."""
        return dict(self.decision_threshold).get(artifact)


def parse_model_config(text: str, where: str) -> ModelConfig:
    """A model config's text; a half-written or wrong one raises ``ValueError`` starting
    with ``where:``."""
    try:  # a leading byte-order mark, as editors write it, is read past (as by Go's reader)
        data = tomllib.loads(text.removeprefix("\ufeff"), parse_float=_float64)
    except (tomllib.TOMLDecodeError, OverflowError) as exc:
        raise ValueError(f"{where}: not TOML: {exc}") from None
    for key in sorted(data):  # sorted: the native reader reports the same first key
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
    return ModelConfig(name, tuple(servable), model_name, _thresholds(data, where))


def _as_float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def _float64(text: str) -> float:
    """A TOML float literal; one beyond float64's range is an error, as in Go's reader."""
    value = float(text)
    if math.isinf(value) and "inf" not in text:
        raise OverflowError(f"{text} is out of range for float64")
    return value


def _thresholds(data: dict, where: str) -> tuple[tuple[str, float], ...]:
    table = data.get("decision_threshold", {})
    if not isinstance(table, dict):
        raise ValueError(f"{where}: 'decision_threshold' must be a table of artifact = probability")
    out = []
    for artifact in sorted(table):  # sorted: the native reader reports the same first error
        value = table[artifact]
        quoted = json.dumps(artifact, ensure_ascii=False)
        if not artifact:
            raise ValueError(f"{where}: 'decision_threshold' has an entry with no artifact name")
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise ValueError(f"{where}: not TOML: {value} is out of range for int64")
        # NaN fails the comparison too; booleans are ints to Python, not to TOML. Both
        # servers compare in float32, where a value below ~7e-46 is 0: it would flag all.
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not 0 < value <= 1
            or _as_float32(value) == 0
        ):
            raise ValueError(
                f"{where}: 'decision_threshold' of {quoted} must be a probability in (0, 1]"
            )
        out.append((artifact, float(value)))
    return tuple(out)


def read_model_config(model_config: Path) -> ModelConfig:
    """Parse the model config file; a half-written or wrong file raises ``ValueError``
    (an unreadable one ``OSError``)."""
    return parse_model_config(Path(model_config).read_text(), str(model_config))


def replace_model_config(model_config: Path, text: str, expect: str | None = None) -> None:
    """Write ``text`` over the model config atomically (the servers' watcher never reads
    half a file), through a temporary file of this writer's own and keeping the file's
    mode. ``expect``: the text the edit was based on; if the file no longer holds it (a
    rollback and a refit at once), ValueError and nothing written."""
    fd, tmp = tempfile.mkstemp(dir=model_config.parent, prefix=f".{model_config.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, model_config.stat().st_mode & 0o777)
        if expect is not None and model_config.read_text() != expect:
            raise ValueError(f"{model_config} changed while it was being edited; run again")
        os.replace(tmp, model_config)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def active_artifact(model_config: Path) -> str:
    """The artifact named by the model config file."""
    return read_model_config(model_config).artifact
