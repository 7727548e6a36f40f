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


class FeatureState:
    """One symbol's rolling state. ``update`` returns that tick's feature vector.

    One buffer holds the ticks of the last 60 s; each window keeps the index of its
    oldest tick inside ``(t - W, t]`` and, where needed, running sums that add a tick on
    arrival and subtract it on leaving. Each tick enters once and leaves each window once.
    """

    __slots__ = (
        "_buf",
        "_h1",
        "_h5",
        "_h30",
        "_h60",
        "_last_price",
        "_last_t",
        "_lo1",
        "_lo5",
        "_lo30",
        "_lo60",
        "_nz30",
        "_nz60",
        "_r2_30",
        "_r2_60",
        "_size60",
    )

    def __init__(self) -> None:
        self._buf: list[tuple[int, float, float, float]] = []  # (t, price, r^2, size)
        self._h1 = self._h5 = self._h30 = self._h60 = 0
        self._lo1 = self._lo5 = self._lo30 = self._lo60 = _NAN  # last trade <= t - W
        self._r2_30 = self._r2_60 = self._size60 = 0.0
        self._nz30 = self._nz60 = 0  # non-zero r^2 inside: a flat window reports exactly 0
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
        nz = r2 != 0.0
        buf = self._buf
        buf.append((t, price, r2, size))
        self._last_price = price
        self._last_t = t

        # 60 s: trade count, volume, sum of r^2, lag price
        s60, z60, n60, h, lo = (
            self._r2_60 + r2,
            self._size60 + size,
            self._nz60 + nz,
            self._h60,
            self._lo60,
        )
        edge = t - 60_000
        while buf[h][0] <= edge:
            _, lo, a, z = buf[h]
            s60 -= a
            z60 -= z
            n60 -= a != 0.0
            h += 1
        if n60 == 0 or s60 < 0.0:
            s60 = 0.0
        self._r2_60, self._size60, self._nz60, self._h60, self._lo60 = s60, z60, n60, h, lo
        count60 = len(buf) - h
        ret60 = math.log(price / lo) if lo == lo else _NAN

        # 30 s: sum of r^2, lag price
        s30, n30, h, lo = self._r2_30 + r2, self._nz30 + nz, self._h30, self._lo30
        edge = t - 30_000
        while buf[h][0] <= edge:
            _, lo, a, _z = buf[h]
            s30 -= a
            n30 -= a != 0.0
            h += 1
        if n30 == 0 or s30 < 0.0:
            s30 = 0.0
        self._r2_30, self._nz30, self._h30, self._lo30 = s30, n30, h, lo
        ret30 = math.log(price / lo) if lo == lo else _NAN

        # 5 s and 1 s: lag price only
        h, lo, edge = self._h5, self._lo5, t - 5_000
        while buf[h][0] <= edge:
            lo = buf[h][1]
            h += 1
        self._h5, self._lo5 = h, lo
        ret5 = math.log(price / lo) if lo == lo else _NAN
        h, lo, edge = self._h1, self._lo1, t - 1_000
        while buf[h][0] <= edge:
            lo = buf[h][1]
            h += 1
        self._h1, self._lo1 = h, lo
        ret1 = math.log(price / lo) if lo == lo else _NAN

        h60 = self._h60
        if h60 > 1024 and h60 * 2 > len(buf):  # drop ticks every window has left
            del buf[:h60]
            self._h60 = 0
            self._h30 -= h60
            self._h5 -= h60
            self._h1 -= h60
        spread = ask - bid
        return [
            price,
            ret1,
            ret5,
            ret30,
            ret60,
            math.sqrt(s30),
            math.sqrt(s60),
            count60 / 60.0,
            z60 / 60.0,
            spread,
            spread / ((ask + bid) * 0.5) * 1e4,
        ]


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
