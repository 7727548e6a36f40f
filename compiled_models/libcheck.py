"""Checks a library must pass before ``dlopen`` may touch it.

The sha256 in the manifest proves only that the library is the one the manifest's
writer meant, so these checks do not trust the manifest: the library path must stay
inside the artifact's folder, and the file must be a whole ELF shared object for this
machine. A truncated library whose segments reach past the end of the file would
otherwise be mapped by ``dlopen`` and kill the process with SIGBUS on first touch.
The native server (server/native/internal/registry/libcheck.go) applies the same rules.
"""

from __future__ import annotations

import os
import platform
import struct
from pathlib import Path, PurePosixPath

_MACHINES = {"x86_64": 62, "aarch64": 183}  # ELF e_machine of the host
_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_PHDR = struct.Struct("<IIQQQQQQ")
PT_DYNAMIC = 2


class LibraryError(ValueError):
    """The library must not be loaded; ``str()`` says why."""


def confined_path(folder: Path, library: str) -> Path:
    """The library's path, refusing any that leaves ``folder`` (``..``, absolute paths,
    symlinks pointing outside)."""
    rel = PurePosixPath(library)
    if not library or rel.is_absolute() or ".." in rel.parts or "\\" in library:
        raise LibraryError(f"library path {library!r} must be a relative path inside the folder")
    path = Path(folder) / rel
    real, root = os.path.realpath(path), os.path.realpath(folder)
    if os.path.commonpath([real, root]) != root:
        raise LibraryError(f"library path {library!r} resolves outside the artifact folder")
    return path


def check_elf(data: bytes) -> None:
    """Refuse anything but a complete little-endian ELF64 shared object for this CPU."""
    if len(data) < _EHDR.size or data[:4] != b"\x7fELF":
        raise LibraryError("not an ELF file")
    ident, e_type, machine, _v, _entry, phoff, shoff, _fl, _eh, phsz, phnum, shsz, shnum, _ = (
        _EHDR.unpack_from(data)
    )
    if ident[4] != 2 or ident[5] != 1:
        raise LibraryError("not a little-endian 64-bit ELF file")
    if e_type != 3:
        raise LibraryError(f"ELF type {e_type} is not a shared object")
    want = _MACHINES.get(platform.machine())
    if want is not None and machine != want:
        raise LibraryError(f"built for ELF machine {machine}, this host is {want}")
    size = len(data)
    if phsz != _PHDR.size or phnum == 0 or phoff + phnum * phsz > size:
        raise LibraryError(f"program headers lie outside the file ({size} bytes): truncated?")
    if shnum and shoff + shnum * shsz > size:
        raise LibraryError(f"section headers lie outside the file ({size} bytes): truncated?")
    dynamic = False
    for k in range(phnum):
        p_type, _f, off, _va, _pa, filesz, _mem, _al = _PHDR.unpack_from(data, phoff + k * phsz)
        if off + filesz > size:
            raise LibraryError(
                f"segment {k} ends at byte {off + filesz} but the file has {size} bytes: truncated"
            )
        dynamic |= p_type == PT_DYNAMIC
    if not dynamic:
        raise LibraryError("no dynamic segment: not a loadable shared object")
