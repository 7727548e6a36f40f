"""Request bytes -> validated float32 matrix -> response. The only per-row Python is
the named-feature path (for people and grpcurl); packed rows go straight to numpy."""

from __future__ import annotations

import numpy as np

from proto.volatility.v1 import predictor_pb2 as pb
from server import contract_gen as contract

_F32_LE = np.dtype("<f4")


def decode_predict(
    req: pb.PredictRequest, feature_names: tuple[str, ...], max_rows: int
) -> np.ndarray:
    has_rows = len(req.rows) > 0
    has_packed = req.HasField("packed")
    if has_rows and has_packed:
        raise contract.rows_and_packed()
    if has_packed:
        return decode_packed(
            req.packed.float32_le, req.packed.num_features, feature_names, max_rows, "packed"
        )
    if not has_rows:
        raise contract.no_rows()
    return decode_rows(req.rows, feature_names, max_rows)


def decode_rows(rows, feature_names: tuple[str, ...], max_rows: int) -> np.ndarray:
    n = len(rows)
    if n > max_rows:
        raise contract.too_many_rows(field="rows", rows=n, max_rows=max_rows)
    width = len(feature_names)
    out = np.empty((n, width), np.float32)
    for i, row in enumerate(rows):
        feats = row.features
        # A protobuf map answers 0.0 for a missing key, so presence is checked first.
        if len(feats) != width or not all(name in feats for name in feature_names):
            raise contract.row_names(row=i, problems=_describe_row(feats, feature_names))
        out[i] = [feats[name] for name in feature_names]
    _reject_infinite_named(out, feature_names)
    return out


def decode_packed(
    data: bytes, num_features: int, feature_names: tuple[str, ...], max_rows: int, field: str
) -> np.ndarray:
    width = len(feature_names)
    if num_features != width:
        raise contract.width(
            field=field, num_features=num_features, width=width, names=", ".join(feature_names)
        )
    return packed_matrix(data, width, max_rows, f"{field}.float32_le")


def packed_matrix(data: bytes, width: int, max_rows: int, field: str) -> np.ndarray:
    if not data:
        raise contract.empty(field=field)
    row_bytes = 4 * width
    if len(data) % row_bytes:
        raise contract.ragged(field=field, size=len(data), width=width)
    rows = len(data) // row_bytes
    if rows > max_rows:
        raise contract.too_many_rows(field=field, rows=rows, max_rows=max_rows)
    return np.frombuffer(data, dtype=_F32_LE).reshape(rows, width)


def reject_infinite(x: np.ndarray, field: str) -> None:
    """Packed rows are checked after their shape and row count, as the native server finds
    infinities while scoring: the same request gets the same first error from both."""
    if np.isinf(x).any():
        raise contract.infinite(field=field, row=int(np.argwhere(np.isinf(x))[0][0]))


def _reject_infinite_named(x: np.ndarray, feature_names: tuple[str, ...]) -> None:
    if np.isinf(x).any():
        r, c = (int(v) for v in np.argwhere(np.isinf(x))[0])
        raise contract.infinite_named(row=r, name=feature_names[c])


def _describe_row(feats, feature_names: tuple[str, ...]) -> str:
    unknown = sorted(set(feats) - set(feature_names))
    missing = [f for f in feature_names if f not in feats]
    parts = []
    if unknown:
        parts.append(contract.text_unknown_features(names=name_list(unknown)))
    if missing:
        parts.append(contract.text_missing_features(names=name_list(missing)))
    return contract.ROW_PROBLEMS_SEPARATOR.join(parts)


def name_list(names: list[str]) -> str:
    """'a', 'b' ... and N more: bounded (proto/contract.toml [limits]), and spelled as the
    native server spells it."""
    shown = [f"'{cut(n, contract.NAME_CHARS_IN_ERROR)}'" for n in names[: contract.NAMES_IN_ERROR]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (contract.text_more_names(more=more) if more else "")


def cut(name: str, limit: int) -> str:
    return name if len(name) <= limit else name[:limit] + "..."


def dims(shape: list[int]) -> str:
    """[2, 9], at most contract.DIMS_IN_ERROR of them, as the native server spells it."""
    shown = ", ".join(map(str, shape[: contract.DIMS_IN_ERROR]))
    return f"[{shown}{', ...' if len(shape) > contract.DIMS_IN_ERROR else ''}]"


def quoted(names: list[str]) -> str:
    """['a', 'b'], as the native server spells a list of names."""
    return "[" + ", ".join(f"'{n}'" for n in names) + "]"


def encode_predict(
    probs: np.ndarray, threshold: float, artifact: str, sha256: str, seconds: float
) -> pb.PredictResponse:
    return pb.PredictResponse(
        probabilities=probs.tolist(),
        labels=(probs >= threshold).tolist(),
        artifact=artifact,
        artifact_sha256=sha256,
        decision_threshold=threshold,
        server_compute_seconds=seconds,
    )
