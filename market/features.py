"""Per-tick features from one symbol's recent history.

``FeatureState`` is the streaming path (amortised O(1) per tick: each tick enters and
leaves each window deque once). ``compute_frame`` is the vectorised path used for
training. ``tests/test_features.py`` proves they agree on the real data.

Windows are right-closed, ``(t - W, t]``, like pandas' time-based ``rolling``. A tick's
log return is taken against the symbol's previous tick (0 for its first tick).
``ret_W`` compares the price now with the last trade at or before ``t - W``; it is NaN
until the symbol has that much history.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pandas as pd

RETURN_WINDOWS_MS = {"ret_1s": 1_000, "ret_5s": 5_000, "ret_30s": 30_000, "ret_60s": 60_000}
FEATURE_NAMES: tuple[str, ...] = (
    "price",
    "ret_1s",
    "ret_5s",
    "ret_30s",
    "ret_60s",
    "rv_30s",
    "rv_60s",
    "trades_per_s_60s",
    "volume_per_s_60s",
    "spread",
    "spread_bps",
)
N_FEATURES = len(FEATURE_NAMES)
_NAN = float("nan")


class _Window:
    """Ticks inside ``(now - span, now]`` with running sums of r^2 and size."""

    __slots__ = ("items", "last_out_price", "nonzero_r2", "span", "sum_r2", "sum_size")

    def __init__(self, span_ms: int) -> None:
        self.span = span_ms
        self.items: deque[tuple[int, float, float, float]] = deque()
        self.sum_r2 = 0.0
        self.sum_size = 0.0
        self.nonzero_r2 = 0  # lets a window of unchanged prices report exactly 0
        self.last_out_price = _NAN  # last trade at or before now - span

    def push(self, t: int, price: float, r2: float, size: float) -> None:
        items = self.items
        items.append((t, price, r2, size))
        self.sum_r2 += r2
        self.sum_size += size
        self.nonzero_r2 += r2 != 0.0
        edge = t - self.span
        while items[0][0] <= edge:
            _, p, old_r2, old_size = items.popleft()
            self.sum_r2 -= old_r2
            self.sum_size -= old_size
            self.nonzero_r2 -= old_r2 != 0.0
            self.last_out_price = p
        if self.nonzero_r2 == 0 or self.sum_r2 < 0.0:  # cancellation noise
            self.sum_r2 = 0.0


class FeatureState:
    """One symbol's rolling state. ``update`` returns that tick's feature vector."""

    __slots__ = ("_last_price", "_last_t", "_ret_windows", "_w30", "_w60", "_windows")

    def __init__(self) -> None:
        self._windows = {ms: _Window(ms) for ms in sorted(set(RETURN_WINDOWS_MS.values()))}
        self._ret_windows = tuple(self._windows[ms] for ms in RETURN_WINDOWS_MS.values())
        self._w30 = self._windows[30_000]
        self._w60 = self._windows[60_000]
        self._last_price = _NAN
        self._last_t = -(2**62)

    def update(
        self, t_ms: int, price: float, size: float, bid: float = _NAN, ask: float = _NAN
    ) -> list[float]:
        """Add one tick and return its features in ``FEATURE_NAMES`` order.

        A tick older than the symbol's last one is treated as arriving at the last time
        (late ticks cannot rewind the windows).
        """
        t = t_ms if t_ms > self._last_t else self._last_t
        last = self._last_price
        r = math.log(price / last) if last == last else 0.0
        r2 = r * r
        for w in self._windows.values():
            w.push(t, price, r2, size)
        self._last_price = price
        self._last_t = t
        out = [price]
        for w in self._ret_windows:
            lag = w.last_out_price
            out.append(math.log(price / lag) if lag == lag else _NAN)
        w60 = self._w60
        out.append(math.sqrt(self._w30.sum_r2))
        out.append(math.sqrt(w60.sum_r2))
        out.append(len(w60.items) / 60.0)
        out.append(w60.sum_size / 60.0)
        spread = ask - bid
        out.append(spread)
        out.append(spread / ((ask + bid) * 0.5) * 1e4)
        return out


def compute_frame(ticks: pd.DataFrame) -> pd.DataFrame:
    """Vectorised features for a time-ordered tick frame, rows aligned with ``ticks``."""
    out = pd.DataFrame(index=ticks.index, columns=list(FEATURE_NAMES), dtype=np.float64)
    for _, g in ticks.groupby("symbol", sort=False):
        out.loc[g.index] = _symbol_features(g).to_numpy()
    return out


def _symbol_features(g: pd.DataFrame) -> pd.DataFrame:
    t = np.maximum.accumulate(g["event_time_ms"].to_numpy(np.int64))
    p = g["price"].to_numpy(np.float64)
    logp = np.log(p)
    r = np.diff(logp, prepend=logp[0])
    feats: dict[str, np.ndarray] = {"price": p}
    for name, span in RETURN_WINDOWS_MS.items():
        lag = np.searchsorted(t, t - span, side="right") - 1
        lagged = np.where(lag >= 0, logp[np.maximum(lag, 0)], np.nan)
        feats[name] = logp - lagged
    idx = pd.to_datetime(t, unit="ms")
    r2 = pd.Series(r * r, index=idx)
    size = pd.Series(g["size"].to_numpy(np.float64), index=idx)
    feats["rv_30s"] = np.sqrt(r2.rolling("30s").sum().clip(lower=0).to_numpy())
    feats["rv_60s"] = np.sqrt(r2.rolling("60s").sum().clip(lower=0).to_numpy())
    feats["trades_per_s_60s"] = size.rolling("60s").count().to_numpy() / 60.0
    feats["volume_per_s_60s"] = size.rolling("60s").sum().to_numpy() / 60.0
    bid = g["bid"].to_numpy(np.float64)
    ask = g["ask"].to_numpy(np.float64)
    feats["spread"] = ask - bid
    feats["spread_bps"] = (ask - bid) / ((ask + bid) * 0.5) * 1e4
    return pd.DataFrame(feats, index=g.index)[list(FEATURE_NAMES)]


def forward_realised_vol(ticks: pd.DataFrame, horizon_ms: int = 60_000) -> np.ndarray:
    """Realised volatility over ``(t, t + horizon]`` per tick; NaN where the data ends
    before the horizon does (those rows cannot be labelled)."""
    out = np.full(len(ticks), np.nan)
    for _, g in ticks.groupby("symbol", sort=False):
        gi = ticks.index.get_indexer(g.index)
        t = g["event_time_ms"].to_numpy(np.int64)
        logp = np.log(g["price"].to_numpy(np.float64))
        cs = np.concatenate([[0.0], np.cumsum(np.diff(logp, prepend=logp[0]) ** 2)])
        end = np.searchsorted(t, t + horizon_ms, side="right")  # first tick after horizon
        rv = np.sqrt(np.maximum(cs[end] - cs[np.arange(len(t)) + 1], 0.0))
        rv[t + horizon_ms > t[-1]] = np.nan
        out[gi] = rv
    return out
