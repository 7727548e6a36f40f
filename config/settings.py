"""The one settings loader of every Python component (config/settings.toml).

Precedence, the same in the native server (server/native/internal/config/config.go):
flag > ``VOLSPIKE_*`` variable > ``--config`` TOML file > default. A ``VOLSPIKE_*``
variable that is no setting of the schema, a file key that is none, or a value that does not
parse or lies outside its range is a ``SettingsError`` naming it; ``main_settings`` turns it
into exit 2. Standard library only: the drift report reads it from its own environment
(.venv-drift).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from config.settings_gen import CLASSES, ENV_PREFIX, ROOT, SPECS, Spec

T = TypeVar("T")
_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_BOOL = {"true": True, "1": True, "false": False, "0": False}
_WANT = {
    "int": "an integer",
    "float": "a number",
    "seconds": "a number of seconds",
    "bool": "true or false",
    "str": "a string",
    "path": "a path",
}
# The TOML types a settings file may give each type (an int is a fine number of seconds).
_FILE_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (int, float),
    "seconds": (int, float),
    "bool": (bool,),
    "str": (str,),
    "path": (str,),
}


class SettingsError(ValueError):
    """A setting that cannot be used; ``str()`` names its source (flag, variable or file key)."""


def specs(component: str) -> list[Spec]:
    """The settings ``component`` (python, native, consumer, drift, tools) reads."""
    return [s for s in SPECS if component in s.read_by]


def parse(spec: Spec, raw: str, source: str) -> Any:
    """``raw`` as ``spec``'s type; the native server accepts exactly the same spellings."""
    bad = SettingsError(f"{source}={_json(raw)} is not {_WANT[spec.type]}")
    if spec.type == "int":
        if not _INT.fullmatch(raw):
            raise bad
        return _in_range(spec, int(raw), raw, source)
    if spec.type in ("float", "seconds"):
        if not _FLOAT.fullmatch(raw):
            raise bad
        return _in_range(spec, float(raw), raw, source)
    if spec.type == "bool":
        if raw.lower() not in _BOOL:
            raise bad
        return _BOOL[raw.lower()]
    if spec.type == "path":
        if raw == "":
            if spec.default != "":
                raise SettingsError(f"{source} is empty; it must name a path")
            return None
        return Path(raw)
    return raw


def _in_range(spec: Spec, value: float, raw: str, source: str) -> Any:
    """``value`` if within the spec's inclusive bounds; the native server words the same."""
    lo, hi = spec.min, spec.max
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        want = f"from {lo!r} to {hi!r}" if lo is not None and hi is not None else (
            f"at least {lo!r}" if lo is not None else f"at most {hi!r}")  # fmt: skip
        raise SettingsError(f"{source}={_json(raw)} is out of range: it must be {want}")
    return value


def _json(value: Any) -> str:
    """As the native server spells values in its messages."""
    return json.dumps(value, ensure_ascii=False, default=str)


def default(spec: Spec) -> Any:
    if spec.type == "path":
        return ROOT / spec.default if spec.default else None
    return spec.default


def check_environ(environ: Mapping[str, str]) -> None:
    """Every ``VOLSPIKE_*`` variable must be a setting of the schema (of any component: one
    environment may serve the server and the consumer)."""
    known = {s.env for s in SPECS}
    for name in sorted(environ):
        if name.startswith(ENV_PREFIX) and name not in known:
            raise SettingsError(f"{name} is not a setting (config/settings.toml){closest(name)}")


def closest(name: str) -> str:
    """The schema's variable nearest to a misspelt one: the highest share of the two names
    in their longest common subsequence (ties to the first in order), if at least 0.6; the
    native server computes the same."""
    best, score = "", 0.6
    for known in sorted(s.env for s in SPECS):
        if (r := 2 * _common(name, known) / (len(name) + len(known))) > score or (
            r == score and not best
        ):
            best, score = known, r
    return f"; did you mean {best}?" if best else ""


def _common(a: str, b: str) -> int:
    """The length of the longest common subsequence of ``a`` and ``b``."""
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def read_file(path: Path, component: str) -> dict[str, Any]:
    """A settings file's values for ``component``. A key of another component's setting is
    left to it; a key of no setting, or a value of the wrong TOML type, is an error."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"settings file {path}: {exc}") from None
    mine = {s.name: s for s in specs(component)}
    names = {s.name for s in SPECS}
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            raise SettingsError(f"{path}: '{key}' is not a setting (config/settings.toml)")
        spec = mine.get(key)
        if spec is None:
            continue
        ok = isinstance(value, _FILE_TYPES[spec.type])
        if not ok or (spec.type != "bool" and isinstance(value, bool)):
            raise SettingsError(f"{path}: {key} = {_json(value)} is not {_WANT[spec.type]}")
        raw = value if isinstance(value, str) else json.dumps(value)
        out[key] = parse(spec, raw, f"{path}: {key}")
    return out


def add_arguments(parser: argparse.ArgumentParser, component: str) -> None:
    """``--config``, ``--print-settings`` and one flag per setting of ``component``; values
    stay strings here and are parsed by ``resolve`` (one message per bad value)."""
    parser.add_argument("--config", type=Path, help="TOML settings file (name = value lines)")
    parser.add_argument(
        "--print-settings", action="store_true", help="print the effective settings as JSON; exit"
    )
    for s in specs(component):
        flags = [f"--{s.flag}"]
        help_text = f"{s.doc} [{s.env}; default {s.default!r}]"
        if s.type == "bool":
            parser.add_argument(
                *flags, dest=f"setting_{s.name}", nargs="?", const="true", help=help_text
            )
        else:
            parser.add_argument(*flags, dest=f"setting_{s.name}", metavar=s.type.upper(),
                                help=help_text)  # fmt: skip


def resolve(
    component: str, args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> Any:
    """The settings of ``component``: flag > variable > file > default."""
    env = os.environ if environ is None else environ
    check_environ(env)
    from_file = read_file(args.config, component) if getattr(args, "config", None) else {}
    values: dict[str, Any] = {}
    for s in specs(component):
        flag = getattr(args, f"setting_{s.name}", None)
        if flag is not None:
            values[s.name] = parse(s, flag, f"--{s.flag}")
        elif s.env in env:
            values[s.name] = parse(s, env[s.env], s.env)
        elif s.name in from_file:
            values[s.name] = from_file[s.name]
        else:
            values[s.name] = default(s)
    return CLASSES[component](**values)


def model_config_of(argv: Sequence[str], environ: Mapping[str, str], cwd: Path) -> Path:
    """The model config a server started with ``argv`` (either server; Go's flags may have
    one dash) in ``environ`` and ``cwd`` reads: the precedence of ``resolve`` (make rollback
    and its check that it edits the file the running server watches)."""

    def flag(name: str) -> str | None:
        for i, arg in enumerate(argv):
            if arg in (f"--{name}", f"-{name}") and i + 1 < len(argv):
                return argv[i + 1]
            if arg.startswith((f"--{name}=", f"-{name}=")):
                return arg.split("=", 1)[1]
        return None

    spec = next(s for s in SPECS if s.name == "model_config")
    given = flag(spec.flag) or environ.get(spec.env)
    if given is None and (file := flag("config")) is not None:
        found = read_file(cwd / file, "python").get(spec.name)
        given = str(found) if found is not None else None
    return (cwd / given).resolve() if given else default(spec).resolve()


def as_json(settings: Any) -> str:
    """The effective settings, as ``--print-settings`` prints them on both servers."""
    out = {}
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        out[f.name] = str(v) if isinstance(v, Path) else v
    return json.dumps(out, sort_keys=True)


def main_settings(
    component: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[Any, argparse.Namespace]:
    """For a ``__main__``: parse ``argv``, resolve the settings, exit 2 naming a bad one,
    print them and exit 0 with ``--print-settings``."""
    add_arguments(parser, component)
    args = parser.parse_args(argv)
    try:
        settings = resolve(component, args, environ)
    except SettingsError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        sys.exit(2)
    if args.print_settings:
        print(as_json(settings))
        sys.exit(0)
    return settings, args
