"""Per-tick, scale-free features from one symbol's recent history.

Every feature is a ratio of the symbol's own quantities, so a model trained on one
market reads another without knowing its price, volume or volatility level:

- ``ret_W_z``: the log return over the last W seconds in units of the symbol's own
  volatility over the last 5 minutes, scaled to W (``ret_W / sqrt(var_300s * W/300)``);
- ``rv_ratio_30_60``: realised volatility of the last 30 s against the last 60 s, per unit
  time (1 when steady, > 1 when it is rising right now);
- ``rv_60s_rel``: realised volatility of the last 60 s against the last 5 minutes' level;
- ``trades_rel_60s`` / ``volume_rel_60s``: trade count and volume per second over 60 s
  against their 5-minute averages;
- ``spread_bps_rel``: the quoted spread in bps against its 5-minute mean (NaN without quotes);
- ``rv_5s_rel`` / ``rv_10s_rel``: realised volatility of the last 5 s / 10 s against the
  5-minute level, per unit time (HAR-style shorter horizons);
- ``jump_share_60s``: the jump part of the last 60 s's realised variation,
  ``1 - (pi/2) * bipower / RV`` clipped to [0, 1] (bipower: sum of ``|r_i| |r_(i-1)|``);
- ``absret_max_60s_z``: the largest one-tick move of the last 60 s in units of the 5-minute
  per-second volatility;
- ``trades_rel_10s``: trade count per second over 10 s against its 5-minute average;
- ``spread_10s_rel``: the mean quoted spread over 10 s against its 5-minute mean.

The last six won their place on the walk-forward folds (docs/features.md, issue 23).

A ratio whose denominator is zero (a flat 5 minutes) is NaN, XGBoost's "missing".

Warm-up: a symbol is ``ready`` once it has ``WARMUP_MS`` (the longest window) of history;
a gap longer than that starts its history again. Rows that are not ready are not scored
by the consumer and not used in training.

``FeatureState`` is the streaming path (amortised O(1) per tick: each tick enters and
leaves each window once): ``market/_featurestate.c``, a line-for-line C port of
``PyFeatureState`` below (the readable reference, ~6x slower), built by ``make models``.
``compute_frame`` is the vectorised path used for training. ``tests/test_features.py``
proves the three agree on every real tick (the two streaming ones bit for bit).

Windows are right-closed, ``(t - W, t]``, like pandas' time-based ``rolling``. A tick's
log return is taken against the symbol's previous tick (0 for the first tick of a
history). ``ret_W`` compares the price now with the last trade at or before ``t - W``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pandas as pd

LONG_MS = 300_000  # the level every ratio is taken against
WARMUP_MS = LONG_MS  # history a symbol needs before it is scored; a longer gap resets it
RETURN_WINDOWS_MS = {"ret_1s_z": 1_000, "ret_5s_z": 5_000, "ret_30s_z": 30_000, "ret_60s_z": 60_000}
FEATURE_NAMES: tuple[str, ...] = (
    "ret_1s_z",
    "ret_5s_z",
    "ret_30s_z",
    "ret_60s_z",
    "rv_ratio_30_60",
    "rv_60s_rel",
    "trades_rel_60s",
    "volume_rel_60s",
    "spread_bps_rel",
    "rv_5s_rel",
    "rv_10s_rel",
    "jump_share_60s",
    "absret_max_60s_z",
    "trades_rel_10s",
    "spread_10s_rel",
)
N_FEATURES = len(FEATURE_NAMES)
_NAN = float("nan")
_SQRT2 = math.sqrt(2.0)
_LONG_PER_60 = LONG_MS / 60_000  # 5: a 60 s quantity per second against a 300 s one
_LONG_PER_10 = LONG_MS / 10_000  # 30
_LONG_PER_5 = LONG_MS / 5_000  # 60
_LONG_S = LONG_MS / 1_000  # 300: var_300s -> variance per second
_HALF_PI = math.pi / 2
_UNIT = {w: ms / LONG_MS for w, ms in RETURN_WINDOWS_MS.items()}  # var_300s -> var over W
_K1, _K5, _K30, _K60 = (1.0 / math.sqrt(_UNIT[w]) for w in RETURN_WINDOWS_MS)


class PyFeatureState:
    """One symbol's rolling state (the reference of the C ``FeatureState``). ``update``
    returns that tick's feature vector and sets ``ready`` (the symbol has ``WARMUP_MS`` of
    unbroken history).

    One buffer holds the ticks of the last 300 s; each window keeps the index of its
    oldest tick inside ``(t - W, t]`` and, where needed, running sums that add a tick on
    arrival and subtract it on leaving.
    """

    __slots__ = (
        "_bp60",
        "_buf",
        "_h1",
        "_h5",
        "_h10",
        "_h30",
        "_h60",
        "_h300",
        "_last_ar",
        "_last_price",
        "_last_t",
        "_lo1",
        "_lo5",
        "_lo30",
        "_lo60",
        "_mx",
        "_mxh",
        "_n300",
        "_nbp60",
        "_nz5",
        "_nz10",
        "_nz30",
        "_nz60",
        "_nz300",
        "_q10",
        "_r2_5",
        "_r2_10",
        "_r2_30",
        "_r2_60",
        "_r2_300",
        "_s300",
        "_size60",
        "_size300",
        "_sp10",
        "_start",
        "ready",
    )

    def __init__(self) -> None:
        self._reset()
        self._last_t = -(2**62)
        self.ready = False

    @property
    def last_t(self) -> int:
        """The symbol's clock: the latest event time it has seen (-2**62 before its first)."""
        return self._last_t

    @property
    def held(self) -> int:
        """Ticks held in the 300 s window."""
        return len(self._buf) - self._h300

    def _reset(self) -> None:
        # (t, p, r^2, size, bps, |r| * |previous r|)
        self._buf: list[tuple[int, float, float, float, float, float]] = []
        self._h1 = self._h5 = self._h10 = self._h30 = self._h60 = self._h300 = 0
        self._lo1 = self._lo5 = self._lo30 = self._lo60 = _NAN  # last trade <= t - W
        self._r2_5 = self._r2_10 = self._r2_30 = self._r2_60 = self._r2_300 = 0.0
        self._size60 = self._size300 = self._s300 = self._sp10 = self._bp60 = 0.0
        # non-zero terms inside each sum: a flat window reads exactly 0
        self._nz5 = self._nz10 = self._nz30 = self._nz60 = self._nz300 = self._nbp60 = 0
        self._n300 = self._q10 = 0  # ticks with a spread inside 300 s / 10 s
        self._mx: list[tuple[int, float]] = []  # (t, |r|), |r| decreasing: the 60 s max
        self._mxh = 0
        self._last_price = _NAN
        self._last_ar = 0.0
        self._start = 0

    def update_into(
        self,
        x: np.ndarray,
        i: int,
        t_ms: int,
        price: float,
        size: float,
        bid: float = _NAN,
        ask: float = _NAN,
    ) -> None:
        """``update``, its features written into row ``i`` of ``x`` (float32 rows of the
        features; the C port fills the row without building a list)."""
        if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != N_FEATURES or not 0 <= i < len(x):
            raise ValueError("update_into: x must be float32 rows of the features, i a row of it")
        x[i] = self.update(t_ms, price, size, bid, ask)

    def update(
        self, t_ms: int, price: float, size: float, bid: float = _NAN, ask: float = _NAN
    ) -> list[float]:
        """Add one tick and return its features in ``FEATURE_NAMES`` order.

        A tick older than the symbol's last one is treated as arriving at the last time
        (late ticks cannot rewind the windows).
        """
        t = t_ms if t_ms > self._last_t else self._last_t
        bps = (ask - bid) / ((ask + bid) * 0.5) * 1e4  # may raise: before any state changes
        if t - self._last_t > WARMUP_MS:  # first tick, or a gap: history starts again
            self._reset()
            self._start = t
        last = self._last_price
        r = math.log(price / last) if last == last else 0.0
        r2 = r * r
        nz = r2 != 0.0
        ar = abs(r)
        bp = ar * self._last_ar
        has_bps = bps == bps
        buf = self._buf
        buf.append((t, price, r2, size, bps, bp))
        self._last_price = price
        self._last_ar = ar
        self._last_t = t

        # 300 s: sum of r^2, trade count, volume, spread sum and count
        v300, z300, n300, s300, q300, h = (
            self._r2_300 + r2,
            self._size300 + size,
            self._nz300 + nz,
            self._s300 + bps if has_bps else self._s300,
            self._n300 + has_bps,
            self._h300,
        )
        edge = t - LONG_MS
        while buf[h][0] <= edge:
            _, _p, a, z, b, _bp = buf[h]
            v300 -= a
            z300 -= z
            n300 -= a != 0.0
            if b == b:
                s300 -= b
                q300 -= 1
            h += 1
        if n300 == 0 or v300 < 0.0:
            v300 = 0.0
        if q300 == 0:
            s300 = 0.0
        self._r2_300, self._size300, self._nz300, self._s300, self._n300, self._h300 = (
            v300,
            z300,
            n300,
            s300,
            q300,
            h,
        )
        count300 = len(buf) - h

        # 60 s: sum of r^2, trade count, volume, bipower sum, lag price, largest |r|
        s60, z60, n60, b60, m60, h, lo = (
            self._r2_60 + r2,
            self._size60 + size,
            self._nz60 + nz,
            self._bp60 + bp,
            self._nbp60 + (bp != 0.0),
            self._h60,
            self._lo60,
        )
        edge = t - 60_000
        while buf[h][0] <= edge:
            _, lo, a, z, _b, c = buf[h]
            s60 -= a
            z60 -= z
            n60 -= a != 0.0
            b60 -= c
            m60 -= c != 0.0
            h += 1
        if n60 == 0 or s60 < 0.0:
            s60 = 0.0
        if m60 == 0 or b60 < 0.0:
            b60 = 0.0
        self._r2_60, self._size60, self._nz60, self._h60, self._lo60 = s60, z60, n60, h, lo
        self._bp60, self._nbp60 = b60, m60
        count60 = len(buf) - h
        ret60 = math.log(price / lo) if lo == lo else _NAN
        mx, mxh = self._mx, self._mxh
        while len(mx) > mxh and mx[-1][1] <= ar:
            mx.pop()
        mx.append((t, ar))
        while mx[mxh][0] <= edge:
            mxh += 1
        amax = mx[mxh][1]
        if mxh > 1024 and mxh * 2 > len(mx):
            del mx[:mxh]
            mxh = 0
        self._mxh = mxh

        # 30 s: sum of r^2, lag price
        s30, n30, h, lo = self._r2_30 + r2, self._nz30 + nz, self._h30, self._lo30
        edge = t - 30_000
        while buf[h][0] <= edge:
            _, lo, a, _z, _b, _c = buf[h]
            s30 -= a
            n30 -= a != 0.0
            h += 1
        if n30 == 0 or s30 < 0.0:
            s30 = 0.0
        self._r2_30, self._nz30, self._h30, self._lo30 = s30, n30, h, lo
        ret30 = math.log(price / lo) if lo == lo else _NAN

        # 10 s: sum of r^2, trade count, spread sum and count
        s10, n10, p10, q10, h = (
            self._r2_10 + r2,
            self._nz10 + nz,
            self._sp10 + bps if has_bps else self._sp10,
            self._q10 + has_bps,
            self._h10,
        )
        edge = t - 10_000
        while buf[h][0] <= edge:
            _, _p, a, _z, b, _c = buf[h]
            s10 -= a
            n10 -= a != 0.0
            if b == b:
                p10 -= b
                q10 -= 1
            h += 1
        if n10 == 0 or s10 < 0.0:
            s10 = 0.0
        if q10 == 0:
            p10 = 0.0
        self._r2_10, self._nz10, self._sp10, self._q10, self._h10 = s10, n10, p10, q10, h
        count10 = len(buf) - h

        # 5 s: sum of r^2, lag price; 1 s: lag price
        s5, n5, h, lo, edge = self._r2_5 + r2, self._nz5 + nz, self._h5, self._lo5, t - 5_000
        while buf[h][0] <= edge:
            lo, a = buf[h][1], buf[h][2]
            s5 -= a
            n5 -= a != 0.0
            h += 1
        if n5 == 0 or s5 < 0.0:
            s5 = 0.0
        self._r2_5, self._nz5, self._h5, self._lo5 = s5, n5, h, lo
        ret5 = math.log(price / lo) if lo == lo else _NAN
        h, lo, edge = self._h1, self._lo1, t - 1_000
        while buf[h][0] <= edge:
            lo = buf[h][1]
            h += 1
        self._h1, self._lo1 = h, lo
        ret1 = math.log(price / lo) if lo == lo else _NAN

        h300 = self._h300
        if h300 > 1024 and h300 * 2 > len(buf):  # drop ticks every window has left
            del buf[:h300]
            self._h300 = 0
            self._h60 -= h300
            self._h30 -= h300
            self._h10 -= h300
            self._h5 -= h300
            self._h1 -= h300
        self.ready = t - self._start >= WARMUP_MS
        if v300 > 0.0:
            iv = 1.0 / math.sqrt(v300)
            x1, x5, x30, x60 = (
                ret1 * iv * _K1,
                ret5 * iv * _K5,
                ret30 * iv * _K30,
                ret60 * iv * _K60,
            )
            rel60 = math.sqrt(_LONG_PER_60 * s60) * iv
            rel5 = math.sqrt(_LONG_PER_5 * s5) * iv
            rel10 = math.sqrt(_LONG_PER_10 * s10) * iv
            maxz = amax / math.sqrt(v300 / _LONG_S)
        else:
            x1 = x5 = x30 = x60 = rel60 = rel5 = rel10 = maxz = _NAN
        if s60 > 0.0:
            jump = 1.0 - _HALF_PI * b60 / s60
            jump = 0.0 if jump < 0.0 else 1.0 if jump > 1.0 else jump
        else:
            jump = _NAN
        return [
            x1,
            x5,
            x30,
            x60,
            _SQRT2 * math.sqrt(s30 / s60) if s60 > 0.0 else _NAN,
            rel60,
            _LONG_PER_60 * count60 / count300,
            _LONG_PER_60 * z60 / z300 if z300 > 0.0 else _NAN,
            bps * q300 / s300 if has_bps and s300 > 0.0 else _NAN,
            rel5,
            rel10,
            jump,
            maxz,
            _LONG_PER_10 * count10 / count300,
            p10 / q10 / (s300 / q300) if q10 > 0 and s300 > 0.0 else _NAN,
        ]


try:  # the C port; `make models` builds it (compiled_models/build_fastcall.py)
    from market._featurestate import FeatureState
except ImportError:  # not built yet (e.g. `make data` on a fresh clone): the reference
    FeatureState = PyFeatureState  # type: ignore[misc, assignment]


def segments(t: np.ndarray) -> np.ndarray:
    """Per tick of one symbol (times already non-decreasing), the index of its history:
    a gap longer than ``WARMUP_MS`` starts a new one."""
    return np.concatenate([[0], np.cumsum(np.diff(t) > WARMUP_MS)]) if len(t) else t


def compute_frame(ticks: pd.DataFrame) -> pd.DataFrame:
    """Vectorised features for a time-ordered tick frame, rows aligned with ``ticks``."""
    return compute(ticks)[0]


def compute(ticks: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and the ``ready`` flag per tick (the streaming path's ``ready``)."""
    out = np.full((len(ticks), N_FEATURES), np.nan)
    ready = np.zeros(len(ticks), dtype=bool)
    for pos, g, t in histories(ticks):
        out[pos], ready[pos] = _segment_features(g, t)
    return pd.DataFrame(out, index=ticks.index, columns=list(FEATURE_NAMES)), ready


def histories(ticks: pd.DataFrame) -> Iterator[tuple[np.ndarray, pd.DataFrame, np.ndarray]]:
    """Each unbroken history of each symbol (the streaming state's lifetime): its rows'
    positions in ``ticks``, those rows, and their non-decreasing event times."""
    codes, _ = pd.factorize(ticks["symbol"], sort=False)
    order = np.argsort(codes, kind="stable")
    for gi in np.split(order, np.flatnonzero(np.diff(codes[order])) + 1):
        if not len(gi):
            continue
        g = ticks.iloc[gi]
        t = np.maximum.accumulate(g["event_time_ms"].to_numpy(np.int64))
        seg = segments(t)
        for s in np.unique(seg):
            m = seg == s
            yield gi[m], g[m], t[m]


def _log_returns(g: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Log prices and each tick's log return against the previous one (0 for the first)."""
    logp = np.log(g["price"].to_numpy(np.float64))
    return logp, np.diff(logp, prepend=logp[0])


def _rolling(values: np.ndarray, idx: pd.DatetimeIndex, window: str, how: str) -> np.ndarray:
    s = pd.Series(values, index=idx).rolling(window)
    return getattr(s, how)().to_numpy()


def _segment_features(g: pd.DataFrame, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logp, r = _log_returns(g)
    idx = pd.to_datetime(t, unit="ms")
    r2 = r * r
    v300 = np.clip(_rolling(r2, idx, "300s", "sum"), 0, None)
    s60 = np.clip(_rolling(r2, idx, "60s", "sum"), 0, None)
    s30 = np.clip(_rolling(r2, idx, "30s", "sum"), 0, None)
    size = g["size"].to_numpy(np.float64)
    count60 = _rolling(size, idx, "60s", "count")
    count300 = _rolling(size, idx, "300s", "count")
    z60 = _rolling(size, idx, "60s", "sum")
    z300 = _rolling(size, idx, "300s", "sum")
    bid = g["bid"].to_numpy(np.float64)
    ask = g["ask"].to_numpy(np.float64)
    bps = (ask - bid) / ((ask + bid) * 0.5) * 1e4
    bps_mean = _rolling(bps, idx, "300s", "mean")
    s5 = np.clip(_rolling(r2, idx, "5s", "sum"), 0, None)
    s10 = np.clip(_rolling(r2, idx, "10s", "sum"), 0, None)
    ar = np.abs(r)
    bp60 = np.clip(_rolling(ar * np.concatenate([[0.0], ar[:-1]]), idx, "60s", "sum"), 0, None)
    amax = _rolling(ar, idx, "60s", "max")
    count10 = _rolling(size, idx, "10s", "count")
    bps_10 = _rolling(bps, idx, "10s", "mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        cols = []
        for name, span in RETURN_WINDOWS_MS.items():
            lag = np.searchsorted(t, t - span, side="right") - 1
            ret = np.where(lag >= 0, logp - logp[np.maximum(lag, 0)], np.nan)
            cols.append(np.where(v300 > 0, ret / np.sqrt(v300 * _UNIT[name]), np.nan))
        cols.append(np.where(s60 > 0, _SQRT2 * np.sqrt(s30 / s60), np.nan))
        cols.append(np.where(v300 > 0, np.sqrt(_LONG_PER_60 * s60 / v300), np.nan))
        cols.append(_LONG_PER_60 * count60 / count300)
        cols.append(np.where(z300 > 0, _LONG_PER_60 * z60 / z300, np.nan))
        cols.append(np.where(bps_mean > 0, bps / bps_mean, np.nan))
        cols.append(np.where(v300 > 0, np.sqrt(_LONG_PER_5 * s5 / v300), np.nan))
        cols.append(np.where(v300 > 0, np.sqrt(_LONG_PER_10 * s10 / v300), np.nan))
        cols.append(np.where(s60 > 0, np.clip(1.0 - _HALF_PI * bp60 / s60, 0.0, 1.0), np.nan))
        cols.append(np.where(v300 > 0, amax / np.sqrt(v300 / _LONG_S), np.nan))
        cols.append(_LONG_PER_10 * count10 / count300)
        cols.append(np.where(bps_mean > 0, bps_10 / bps_mean, np.nan))
    ready = t - t[0] >= WARMUP_MS
    return np.column_stack(cols), ready


def trailing_realised_vol(ticks: pd.DataFrame, window_ms: int) -> np.ndarray:
    """Realised volatility over ``(t - window, t]`` per tick (per symbol history), the
    raw-level quantity baselines and the label are built from."""
    out = np.full(len(ticks), np.nan)
    for pos, g, t in histories(ticks):
        r = _log_returns(g)[1]
        idx = pd.to_datetime(t, unit="ms")
        out[pos] = np.sqrt(np.clip(_rolling(r * r, idx, f"{window_ms}ms", "sum"), 0, None))
    return out


def forward_realised_vol(ticks: pd.DataFrame, horizon_ms: int = 60_000) -> np.ndarray:
    """Realised volatility over ``(t, t + horizon]`` per tick; NaN where the symbol's
    history ends (data end or a gap) before the horizon does."""
    out = np.full(len(ticks), np.nan)
    for pos, g, t in histories(ticks):
        cs = np.concatenate([[0.0], np.cumsum(_log_returns(g)[1] ** 2)])
        end = np.searchsorted(t, t + horizon_ms, side="right")  # first tick after it
        rv = np.sqrt(np.maximum(cs[end] - cs[np.arange(len(t)) + 1], 0.0))
        rv[t + horizon_ms > t[-1]] = np.nan
        out[pos] = rv
    return out
