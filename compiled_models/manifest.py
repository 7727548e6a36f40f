"""The manifest that travels with every compiled artifact."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from compiled_models import manifest_schema_gen as schema

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
    scope: str = ""
    """What its evaluation rests on, one sentence (compiled_models/scope.py:sentence): the
    README's table row and ModelInfo.scope."""

    def write(self, folder: Path) -> None:
        """Strict JSON: a metric that is undefined (NaN: e.g. PR-AUC on a block without
        positives) is written as null, never as a bare NaN other parsers refuse. What the
        servers would refuse (``check``) is refused here, at build time, naming the problem."""
        text = json.dumps(_nan_to_none(asdict(self)), indent=2, sort_keys=True, allow_nan=False)
        data = (text + "\n").encode("utf-8")
        try:
            check(data)
        except ValueError as exc:
            raise ValueError(f"refusing to write the manifest of {self.name}: {exc}") from None
        (folder / MANIFEST_FILE).write_bytes(data)

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        return cls.parse((folder / MANIFEST_FILE).read_bytes())

    @classmethod
    def parse(cls, data: bytes) -> Manifest:
        """The manifest in ``data``, checked (``check``) first."""
        return cls.from_raw(check(data))

    @classmethod
    def from_raw(cls, raw: dict) -> Manifest:
        """From a checked document (``check``): every key is a field, missing metadata
        takes its default."""
        known = {f.name for f in fields(cls)}
        kept = {k: v for k, v in raw.items() if k in known}
        kept["feature_names"] = tuple(kept["feature_names"])
        return cls(**kept)


_NAME_CHARS = schema.NAME_CHARS_IN_ERROR  # a key or number quoted in a refusal is cut to it
DRIFT_MIN_EDGES = 0
"""The fewest edges of a feature's bins (the contract's "0-32"): a feature without one present
reference value (spread_bps_rel of the E-mini artifacts: no quotes) has no value edges, only
its NaN bin (drift/bins.py), and the built manifests hold {"edges": [], "shares": [0, 1]}."""

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
ARTIFACT_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
"""Kind ``artifact``; the consumer checks the name in every answer with it too."""
_FEATURE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CONSTANTS = {"NaN": "NaN", "Infinity": "Infinity", "-Infinity": "-Infinity"}
_scanstring: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]
_LITERALS: dict[str, Any] = {"null": None, "true": True, "false": False}
_BAD_TEXT = "manifest holds text that is not valid Unicode (a lone surrogate or U+FFFD)"


def check(data: bytes) -> dict[str, Any]:
    """The manifest in ``data`` (the file's bytes) checked against the schema of
    proto/contract.toml [manifest] (compiled_models/manifest_schema_gen.py), as the native
    server checks it: the same verdict and the same message (a JSON syntax error aside,
    whose words are each JSON library's own). Returns the checked document, keys in
    document order; raises ``ValueError`` naming the first problem.

    The document is decoded once, here, with every check made in document order while
    decoding (as the native server's token walker does): nesting, a key given twice, a
    number that is not a finite float64, text that is not valid Unicode."""
    if len(data) > schema.MANIFEST_MAX_BYTES:
        raise ValueError(f"manifest is {len(data)} bytes; the limit is {schema.MANIFEST_MAX_BYTES}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("manifest is not valid UTF-8") from None
    try:
        doc = _Decoder(text).document()
    except json.JSONDecodeError as exc:
        raise ValueError(f"unreadable manifest: {exc}") from None
    except RecursionError:  # bounded by the depth check; kept as the spec says
        raise ValueError(f"manifest nests deeper than {schema.MANIFEST_MAX_DEPTH} levels") from None
    if not isinstance(doc, dict):
        raise ValueError("manifest is not a JSON object")
    for name, kind, required in schema.FIELDS:
        if name not in doc:
            if required:
                raise ValueError(f"manifest field '{name}' is missing")
            continue
        if not _of_kind(kind, doc[name], doc):
            raise ValueError(f"manifest field '{name}' must be {schema.KINDS[kind]}")
    known = {name for name, _, _ in schema.FIELDS}
    for key in doc:
        if key not in known:
            raise ValueError(
                f"manifest field '{cut(key, _NAME_CHARS)}' is not in the manifest schema"
            )
    return doc


def cut(text: str, limit: int) -> str:
    """As server/codec.py's cut: at most ``limit`` characters, then "..."."""
    return text if len(text) <= limit else text[:limit] + "..."


class _Decoder:
    """Strict JSON (RFC 8259) to dict / list / str / int / float / bool / None, refusing
    while it reads: nesting deeper than MANIFEST_MAX_DEPTH, a key twice in one object, a
    number out of float64's range, NaN/Infinity, text with a lone surrogate or U+FFFD."""

    def __init__(self, text: str) -> None:
        self.s = text

    def document(self) -> Any:
        i = self._ws(0)
        value, i = self._value(i, 0)
        i = self._ws(i)
        if i != len(self.s):
            raise json.JSONDecodeError("Extra data", self.s, i)
        return value

    def _ws(self, i: int) -> int:
        m = _WS.match(self.s, i)
        assert m is not None  # matches the empty string
        return m.end()

    def _value(self, i: int, depth: int) -> tuple[Any, int]:
        s = self.s
        c = s[i : i + 1]
        if c == '"':
            return self._string(i)
        if c == "{":
            return self._object(i + 1, depth + 1)
        if c == "[":
            return self._array(i + 1, depth + 1)
        for word, value in _LITERALS.items():
            if s.startswith(word, i):
                return value, i + len(word)
        for word in _CONSTANTS:
            if s.startswith(word, i):
                raise ValueError(f"unreadable manifest: {refused_constant(word)}")
        m = _NUMBER.match(s, i)
        if m is None:
            raise json.JSONDecodeError("Expecting value", s, i)
        literal = m.group()
        number = float(literal)  # inf when out of range (an integer too), never an error
        if not math.isfinite(number):
            raise ValueError(f"manifest holds a number out of range: {cut(literal, _NAME_CHARS)}")
        if m.group(1) is None and m.group(2) is None:
            return int(literal), m.end()  # at most 309 digits: finite as a float64
        return number, m.end()

    def _string(self, i: int) -> tuple[str, int]:
        text, end = _scanstring(self.s, i + 1, True)  # json's own (C) string reader
        if "\ufffd" in text:
            raise ValueError(_BAD_TEXT)
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate (a \ud800 escape)
            raise ValueError(_BAD_TEXT) from None
        return text, end

    def _nested(self, depth: int) -> None:
        if depth > schema.MANIFEST_MAX_DEPTH:
            raise ValueError(f"manifest nests deeper than {schema.MANIFEST_MAX_DEPTH} levels")

    def _object(self, i: int, depth: int) -> tuple[dict[str, Any], int]:
        self._nested(depth)
        s = self.s
        out: dict[str, Any] = {}
        i = self._ws(i)
        if s[i : i + 1] == "}":
            return out, i + 1
        while True:
            if s[i : i + 1] != '"':
                raise json.JSONDecodeError(
                    "Expecting property name enclosed in double quotes", s, i
                )
            key, i = self._string(i)
            if key in out:
                raise ValueError(f"manifest has the key '{cut(key, _NAME_CHARS)}' twice")
            i = self._ws(i)
            if s[i : i + 1] != ":":
                raise json.JSONDecodeError("Expecting ':' delimiter", s, i)
            out[key], i = self._value(self._ws(i + 1), depth)
            i = self._ws(i)
            c = s[i : i + 1]
            if c == "}":
                return out, i + 1
            if c != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", s, i)
            i = self._ws(i + 1)

    def _array(self, i: int, depth: int) -> tuple[list[Any], int]:
        self._nested(depth)
        s = self.s
        out: list[Any] = []
        i = self._ws(i)
        if s[i : i + 1] == "]":
            return out, i + 1
        while True:
            value, i = self._value(i, depth)
            out.append(value)
            i = self._ws(i)
            c = s[i : i + 1]
            if c == "]":
                return out, i + 1
            if c != ",":
                raise json.JSONDecodeError("Expecting ',' delimiter", s, i)
            i = self._ws(i + 1)


def _number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _of_kind(kind: str, v: object, doc: dict[str, Any]) -> bool:
    if kind == "artifact":
        return isinstance(v, str) and ARTIFACT_NAME.fullmatch(v) is not None
    if kind == "features":
        return (
            isinstance(v, list)
            and 1 <= len(v) <= schema.MANIFEST_MAX_FEATURES
            and all(isinstance(x, str) and _FEATURE.fullmatch(x) is not None for x in v)
            and len(set(v)) == len(v)
        )
    if kind == "probability":
        return _number(v) and 0.0 <= float(v) <= 1.0  # type: ignore[arg-type]
    if kind == "sha256":
        return isinstance(v, str) and _SHA256.fullmatch(v) is not None
    if kind == "text":
        return isinstance(v, str) and len(v) <= schema.MANIFEST_TEXT_CHARS
    if kind in ("calibration", "object"):
        return isinstance(v, dict)
    if kind == "drift":
        return _drift(v, doc["feature_names"])  # required, and checked before drift
    raise ValueError(f"manifest schema: unknown kind {kind!r}")  # a generator bug


def _drift(v: object, feature_names: list[str]) -> bool:
    if not isinstance(v, dict):
        return False
    if not v:
        return True
    if set(v) != {"features", "prediction"}:
        return False
    features = v["features"]
    return (
        isinstance(features, dict)
        and set(features) == set(feature_names)
        and all(_bins(b) for b in features.values())
        and _bins(v["prediction"])
    )


def _bins(v: object) -> bool:
    if not isinstance(v, dict) or set(v) != {"edges", "shares"}:
        return False
    edges, shares = v["edges"], v["shares"]
    if (
        not isinstance(edges, list)
        or not DRIFT_MIN_EDGES <= len(edges) <= schema.MANIFEST_DRIFT_MAX_EDGES
    ):
        return False
    if not all(_number(e) for e in edges):
        return False
    if any(float(a) >= float(b) for a, b in itertools.pairwise(edges)):
        return False
    return (
        isinstance(shares, list)
        and len(shares) == len(edges) + 2
        and all(_number(x) and 0.0 <= float(x) <= 1.0 for x in shares)
    )


def refused_constant(name: str) -> str:
    return f"{name} is not JSON"


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
