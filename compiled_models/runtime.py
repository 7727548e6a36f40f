"""Load a verified compiled artifact and predict through its batch entry point.

The library is native code, so it is only loaded after its bytes match the manifest's
sha256. The verified bytes are copied into an anonymous memory file and loaded from
there, so the file on disk cannot be swapped between the check and ``dlopen``.
"""

from __future__ import annotations

import _ctypes
import ctypes
import os
from pathlib import Path

import numpy as np

from compiled_models import _fastcall  # built by `make models` (build_fastcall.py)
from compiled_models.calibration import parse as parse_calibration
from compiled_models.libcheck import LibraryError, check_elf, confined_path
from compiled_models.manifest import MANIFEST_FILE, Manifest, check, sha256_bytes

_F32 = np.dtype(np.float32)
_call = _fastcall.call


class ArtifactError(RuntimeError):
    """The artifact on disk cannot be trusted or does not fit the serving schema."""


class InvalidInput(ValueError):
    """The caller's array is not a valid batch for this model."""


class CompiledModel:
    """A verified, loaded artifact. ``predict`` is thread-safe and releases the GIL."""

    def __init__(self, folder: Path, expected_features: tuple[str, ...] | None = None):
        """``expected_features``: refuse an artifact listing others (None: any list; the
        servers take the list from the manifest). The manifest is checked against its
        schema (``manifest.check``, proto/contract.toml [manifest]) before anything in it
        is trusted, and decoded from the checked document only."""
        folder = Path(folder)
        try:
            raw = (folder / MANIFEST_FILE).read_bytes()  # read once
        except OSError as exc:
            raise ArtifactError(f"artifact {folder.name}: unreadable manifest: {exc}") from exc
        try:
            manifest = Manifest.from_raw(check(raw))
        except (ValueError, TypeError, KeyError) as exc:
            raise ArtifactError(f"artifact {folder.name}: {exc}") from exc
        self.manifest_json = raw.decode("utf-8")  # as written (check: valid UTF-8)
        self.manifest = manifest
        self.name = manifest.name
        if self.name != folder.name:
            raise ArtifactError(
                f"artifact {folder.name}: manifest names it {self.name!r}; "
                "an artifact's name is its folder's"
            )
        try:
            self.calibration = parse_calibration(manifest.calibration)
        except ValueError as exc:
            raise ArtifactError(f"artifact {self.name}: {exc}") from None
        if expected_features is not None and manifest.feature_names != tuple(expected_features):
            raise ArtifactError(
                f"artifact {self.name}: feature schema {list(manifest.feature_names)} "
                f"does not match the expected {list(expected_features)}"
            )
        try:
            data = confined_path(folder, manifest.library).read_bytes()
        except (OSError, LibraryError) as exc:
            raise ArtifactError(f"artifact {self.name}: {exc}") from None
        digest = sha256_bytes(data)
        if digest != manifest.library_sha256:
            raise ArtifactError(
                f"artifact {self.name}: {manifest.library} sha256 {digest} does not match "
                f"manifest {manifest.library_sha256}; refusing to load it"
            )
        try:
            check_elf(data)
        except LibraryError as exc:
            raise ArtifactError(
                f"artifact {self.name}: {manifest.library} is not a loadable library: {exc}"
            ) from None
        self.sha256 = digest
        self._fd, self._lib = _dlopen_bytes(data, self.name)
        self.n_features = int(self._lib.vs_num_feature())
        if self.n_features != len(manifest.feature_names):
            raise ArtifactError(
                f"artifact {self.name}: library expects {self.n_features} features, "
                f"manifest lists {len(manifest.feature_names)}"
            )
        self.threshold = manifest.decision_threshold
        fn = ctypes.cast(self._lib.vs_predict_batch, ctypes.c_void_p).value
        assert fn is not None  # a resolved symbol (ctypes raises AttributeError when missing)
        self._fn = fn
        # Libraries built before the AVX-512 layout have neither symbol: one path only.
        portable = getattr(self._lib, "vs_predict_batch_portable", None)
        self._fn_portable: int = (
            (ctypes.cast(portable, ctypes.c_void_p).value or fn) if portable else fn
        )
        # True when batches of 24+ rows run the AVX-512 layout (forest_simd.c)
        active = getattr(self._lib, "vs_simd_active", None)
        if active is not None:
            active.restype, active.argtypes = ctypes.c_int32, []
        self.simd = bool(active()) if active is not None else False

    def __del__(self) -> None:
        # Safe: a thread inside predict() holds a reference to self, so nothing can
        # still be executing the library's code once the last reference is gone.
        lib = getattr(self, "_lib", None)
        if lib is not None:
            _ctypes.dlclose(lib._handle)
            os.close(self._fd)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (the scale of ``threshold``) for a C-contiguous float32
        ``[rows, n_features]`` array; without a calibration, the raw tree output.

        NaN means "missing" (as in XGBoost); infinities are rejected.
        """
        out = self.predict_raw(x)
        return out if self.calibration is None else self.calibration.apply(out)

    def predict_raw(self, x: np.ndarray, *, portable: bool = False) -> np.ndarray:
        """The compiled trees' probabilities, before any calibration (as XGBoost's).
        ``portable``: TL2cgen's code for every row, never the AVX-512 layout (benchmarks
        and the test that both give the same bits)."""
        if type(x) is not np.ndarray or x.dtype != _F32 or x.ndim != 2:
            raise InvalidInput(self._describe_bad(x))
        rows, cols = x.shape
        if cols != self.n_features or rows == 0 or not x.flags.c_contiguous:
            raise InvalidInput(self._describe_bad(x))
        out = np.empty(rows, dtype=_F32)
        bad = _call(self._fn_portable if portable else self._fn, rows, x, out)  # GIL released
        if bad >= 0:
            raise InvalidInput(f"{self.name}: row {bad} contains an infinite value")
        return out

    def _describe_bad(self, x: object) -> str:
        want = f"C-contiguous float32 array of shape [rows >= 1, {self.n_features}]"
        if not isinstance(x, np.ndarray):
            return f"{self.name}: expected a {want}, got {type(x).__name__}"
        if x.dtype != _F32:
            return f"{self.name}: expected a {want}, got dtype {x.dtype}"
        if x.ndim != 2:
            return f"{self.name}: expected a {want}, got {x.ndim} dimension(s)"
        if x.shape[1] != self.n_features:
            return f"{self.name}: expected {self.n_features} features per row, got {x.shape[1]}"
        if x.shape[0] == 0:
            return f"{self.name}: expected at least one row, got an empty array"
        return f"{self.name}: expected a {want}, got a non-contiguous array"


def _dlopen_bytes(data: bytes, name: str) -> tuple[int, ctypes.CDLL]:
    """Load ``data`` as a shared library from an anonymous memory file.

    The fd stays open while the library is loaded: glibc recognises an already-loaded
    object by its path, so a reused ``/proc/self/fd/N`` would return the old library.
    """
    fd = os.memfd_create(f"artifact-{name}", 0)
    try:
        with open(fd, "wb", closefd=False) as f:
            f.write(data)
        lib = ctypes.CDLL(f"/proc/self/fd/{fd}", mode=os.RTLD_LOCAL | os.RTLD_NOW)
    except BaseException:
        os.close(fd)
        raise
    lib.vs_num_feature.restype = ctypes.c_int32
    lib.vs_num_feature.argtypes = []
    return fd, lib


def load(folder: Path | str) -> CompiledModel:
    return CompiledModel(Path(folder))
