"""The one tick schema used by the real data, the synthetic generator and the stream."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

TICK_COLUMNS = ("symbol", "event_time_ms", "price", "size", "bid", "ask")


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade. ``bid``/``ask`` are NaN when the source carries no quote."""

    symbol: str
    event_time_ms: int  # milliseconds since the Unix epoch, UTC
    price: float
    size: float
    bid: float = float("nan")
    ask: float = float("nan")


def frame_to_ticks(df: pd.DataFrame) -> list[Tick]:
    """Rows of a tick frame (columns ``TICK_COLUMNS``) as ``Tick`` objects, in order."""
    cols = [df[c].to_numpy() for c in TICK_COLUMNS]
    return [
        Tick(str(s), int(t), float(p), float(z), float(b), float(a))
        for s, t, p, z, b, a in zip(*cols, strict=True)
    ]


def empty_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype=object),
            "event_time_ms": pd.Series([], dtype=np.int64),
            "price": pd.Series([], dtype=np.float64),
            "size": pd.Series([], dtype=np.float64),
            "bid": pd.Series([], dtype=np.float64),
            "ask": pd.Series([], dtype=np.float64),
        }
    )
