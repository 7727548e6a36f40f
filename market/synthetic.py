"""Seeded synthetic crypto-like ticks for load tests and streams of any length.

Everything runs in EVENT TIME (seconds since ``start_ms``), on a one-second grid:

- a shared two-state regime (calm / stressed), Markov-switching: run lengths are geometric
  in seconds with means ``calm_s`` and ``stressed_s``;
- a shared log-volatility factor, the sum of a fast and a slow Ornstein-Uhlenbeck process
  (half-lives ``FAST_HALFLIFE_S`` / ``SLOW_HALFLIFE_S``), so volatility clusters on minute
  and hour scales; in the stressed regime volatility is ``stress_vol`` times higher;
- trades arrive per symbol as a Poisson process: ``rate_per_s`` is the mean number of ticks
  per second across all symbols in the calm regime (split by ``SymbolSpec.weight``), the
  stressed regime is ``stress_rate`` times faster;
- each symbol's log price is a Brownian motion in event time with that volatility (a tick's
  return has variance vol^2 x the time since the symbol's previous tick) plus rare jumps
  (more likely when stressed), so its one-minute statistics do not depend on the trade
  rate; spreads widen when stressed.

``SymbolSpec.sigma`` is the long-run one-minute log-return std (regimes, factor and jumps
included). The defaults are tuned against real BTC one-minute bars (``market.btc``): run
``python -m market.compare_btc`` for the comparison.

The frame carries the tick columns (``market.ticks.TICK_COLUMNS``) plus ``stressed`` (the
regime at that tick); callers that publish ticks select ``TICK_COLUMNS``. Same seed and
arguments -> same ticks, chunk by chunk: the stream is generated in blocks whose size
depends only on the constructor arguments, so ``frames(total, chunk)`` concatenated equals
``frame(total)`` for any ``chunk``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from market.ticks import TICK_COLUMNS

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FRAME_COLUMNS = (*TICK_COLUMNS, "stressed")

# the shared log-volatility factor: stationary std and half-life of each OU component
FAST_SD, FAST_HALFLIFE_S = 0.45, 300.0
SLOW_SD, SLOW_HALFLIFE_S = 0.22, 3600.0
# jumps per hour (calm, stressed) and their std in units of the symbol's one-minute sigma
JUMPS_PER_HOUR = (0.25, 3.0)
JUMP_SIZE = 2.0
STRESS_RATE = 2.0  # default: stressed trades arrive this much faster
STRESS_SPREAD = 2.5  # spreads widen this much in the stressed regime
BLOCK_TICKS = 20_000  # mean ticks generated per internal block


@dataclass(frozen=True)
class SymbolSpec:
    name: str
    price: float
    weight: float  # share of all trades
    sigma: float  # long-run one-minute log-return std (all regimes and jumps included)
    spread_bps: float  # typical quoted spread in the calm regime


DEFAULT_SYMBOLS = (
    SymbolSpec("BTC-USD", 65_000.0, 0.45, 0.0013, 0.6),
    SymbolSpec("ETH-USD", 3_200.0, 0.30, 0.0017, 1.0),
    SymbolSpec("SOL-USD", 150.0, 0.15, 0.0022, 2.5),
    SymbolSpec("DOGE-USD", 0.15, 0.10, 0.0026, 5.0),
)


def universe(n: int) -> tuple[SymbolSpec, ...]:
    """``n`` symbols with equal trade shares, cycling the default specs: a wide universe
    keeps each symbol's trade rate realistic when the whole stream is fast."""
    if n <= len(DEFAULT_SYMBOLS):
        return DEFAULT_SYMBOLS[:n] if n > 0 else DEFAULT_SYMBOLS
    out = []
    for i in range(n):
        base = DEFAULT_SYMBOLS[i % len(DEFAULT_SYMBOLS)]
        name = base.name if i < len(DEFAULT_SYMBOLS) else f"{base.name[:-4]}{i}-USD"
        out.append(SymbolSpec(name, base.price, 1.0 / n, base.sigma, base.spread_bps))
    return tuple(out)


class SyntheticTicks:
    """An endless, reproducible tick stream in event time; ``frames`` yields it in chunks."""

    def __init__(
        self,
        symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS,
        seed: int = 7,
        rate_per_s: float = 50.0,
        start_ms: int = START_MS,
        calm_s: float = 180.0,
        stressed_s: float = 45.0,
        stress_rate: float = STRESS_RATE,
        stress_vol: float = 2.5,
    ) -> None:
        if rate_per_s <= 0 or calm_s < 1 or stressed_s < 1:
            raise ValueError("rate_per_s must be > 0 and regime means at least 1 s")
        self.symbols = symbols
        self.rate_per_s = float(rate_per_s)
        self.start_ms = int(start_ms)
        self.calm_s, self.stressed_s = float(calm_s), float(stressed_s)
        self.stress_rate, self.stress_vol = float(stress_rate), float(stress_vol)
        self._rng = np.random.default_rng(seed)
        weights = np.array([s.weight for s in symbols], dtype=np.float64)
        self._rates = self.rate_per_s * weights / weights.sum()  # calm ticks/s per symbol
        self._names = np.array([s.name for s in symbols], dtype=object)
        self._spread_bps = np.array([s.spread_bps for s in symbols], dtype=np.float64)
        # per-second diffusion scale: long-run variance minus the jumps' share, over the
        # long-run mean of the factor and regime variance multipliers
        sigma_min = np.array([s.sigma for s in symbols], dtype=np.float64)
        p_stress = self.stressed_s / (self.calm_s + self.stressed_s)
        jumps_per_s = ((1 - p_stress) * JUMPS_PER_HOUR[0] + p_stress * JUMPS_PER_HOUR[1]) / 3600
        jump_share = jumps_per_s * 60 * JUMP_SIZE**2
        if jump_share >= 1:
            raise ValueError("jumps alone exceed the symbols' variance")
        factor_var = math.exp(2 * (FAST_SD**2 + SLOW_SD**2))
        regime_var = (1 - p_stress) + p_stress * self.stress_vol**2
        self._diffusion = sigma_min * math.sqrt((1 - jump_share) / 60 / factor_var / regime_var)
        self._jump_sd = sigma_min * JUMP_SIZE
        # internal blocks of whole seconds, sized from the arguments only (chunk invariance)
        self._block_s = int(min(86_400, max(1, math.ceil(BLOCK_TICKS / self.rate_per_s))))
        # carried state
        self._second = 0  # next second to generate
        self._stressed = True  # the first run flips this: streams start calm
        self._left_in_run = 0
        self._fast = self._rng.standard_normal() * FAST_SD
        self._slow = self._rng.standard_normal() * SLOW_SD
        self._logp = np.log([s.price for s in symbols])
        self._last_t = np.zeros(len(symbols))  # event seconds of each symbol's last tick
        self._pending: list[dict[str, np.ndarray]] = []
        self._pending_rows = 0

    # --- the one-second grid ------------------------------------------------------------

    def _regimes(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=bool)
        i = 0
        while i < n:
            if self._left_in_run == 0:
                self._stressed = not self._stressed
                mean = self.stressed_s if self._stressed else self.calm_s
                self._left_in_run = int(self._rng.geometric(1.0 / mean))
            k = min(self._left_in_run, n - i)
            out[i : i + k] = self._stressed
            self._left_in_run -= k
            i += k
        return out

    def _factor(self, n: int) -> np.ndarray:
        """The log-volatility factor at each of the next ``n`` seconds (exact OU steps)."""
        z = self._rng.standard_normal((n, 2))
        out = np.empty(n)
        fast, slow = self._fast, self._slow
        a_f = 0.5 ** (1.0 / FAST_HALFLIFE_S)
        a_s = 0.5 ** (1.0 / SLOW_HALFLIFE_S)
        e_f = FAST_SD * math.sqrt(1 - a_f * a_f)
        e_s = SLOW_SD * math.sqrt(1 - a_s * a_s)
        zf, zs = z[:, 0].tolist(), z[:, 1].tolist()
        for k in range(n):
            fast = a_f * fast + e_f * zf[k]
            slow = a_s * slow + e_s * zs[k]
            out[k] = fast + slow
        self._fast, self._slow = fast, slow
        return out

    def _block(self) -> dict[str, np.ndarray]:
        """The ticks of the next ``_block_s`` seconds, time-ordered."""
        rng = self._rng
        n_s, n_sym = self._block_s, len(self.symbols)
        stressed = self._regimes(n_s)
        factor = self._factor(n_s)
        vol = np.exp(factor) * np.where(stressed, self.stress_vol, 1.0)  # x diffusion scale
        rate_mult = np.where(stressed, self.stress_rate, 1.0)
        counts = rng.poisson(np.outer(rate_mult, self._rates))  # (second, symbol)
        sec = np.repeat(np.repeat(np.arange(n_s), n_sym), counts.ravel())
        sym = np.repeat(np.tile(np.arange(n_sym), n_s), counts.ravel())
        m = sec.size
        t = self._second + sec + rng.random(m)  # event seconds since start
        self._second += n_s
        # per symbol, in time order: gaps since its previous tick, returns, price path
        by_sym = np.lexsort((t, sym))
        t_s, sym_s, sec_s = t[by_sym], sym[by_sym], sec[by_sym]
        first = np.ones(m, dtype=bool)
        first[1:] = sym_s[1:] != sym_s[:-1]
        prev = np.empty(m)
        prev[1:] = t_s[:-1]
        prev[first] = self._last_t[sym_s[first]]
        gap = t_s - prev
        sd = self._diffusion[sym_s] * vol[sec_s] * np.sqrt(gap)
        jump_p = np.where(stressed, JUMPS_PER_HOUR[1], JUMPS_PER_HOUR[0])[sec_s] / 3600
        jump_p = np.minimum(1.0, jump_p / (self._rates[sym_s] * rate_mult[sec_s]))
        jumps = (rng.random(m) < jump_p) * rng.standard_normal(m) * self._jump_sd[sym_s]
        ret = sd * rng.standard_normal(m) + jumps
        cum = np.cumsum(ret)
        starts = np.flatnonzero(first)
        # cumulative sum restarted at each symbol's first row, plus its carried log price
        offset = np.repeat(cum[starts] - ret[starts], np.diff(np.append(starts, m)))
        logp = self._logp[sym_s] + cum - offset
        ends = np.append(starts[1:], m) - 1
        self._logp[sym_s[ends]] = logp[ends]
        self._last_t[sym_s[ends]] = t_s[ends]
        # back to time order (ties, vanishingly rare, by symbol)
        order = np.lexsort((sym_s, t_s))
        t_o, sym_o, sec_o = t_s[order], sym_s[order], sec_s[order]
        price = np.exp(logp[order])
        stress_o = stressed[sec_o]
        spread_bps = self._spread_bps[sym_o] * np.where(stress_o, STRESS_SPREAD, 1.0)
        spread = price * spread_bps * 1e-4 * np.exp(0.5 * factor[sec_o]) * rng.lognormal(0, 0.25, m)
        return {
            "sym": sym_o,
            "event_time_ms": self.start_ms + np.floor(t_o * 1000.0).astype(np.int64),
            "price": price,
            "size": np.maximum(np.round(rng.lognormal(-1.0, 1.2, m), 6), 1e-6),
            "bid": price - spread / 2,
            "ask": price + spread / 2,
            "stressed": stress_o,
        }

    # --- the public stream ----------------------------------------------------------------

    def frame(self, n: int) -> pd.DataFrame:
        """The next ``n`` ticks of the stream (all symbols interleaved, time-ordered)."""
        while self._pending_rows < n:
            block = self._block()
            self._pending.append(block)
            self._pending_rows += block["sym"].size
        keys = ("sym", "event_time_ms", "price", "size", "bid", "ask", "stressed")
        if len(self._pending) == 1:
            cols = self._pending[0]
        else:
            cols = {k: np.concatenate([b[k] for b in self._pending]) for k in keys}
        head = {k: v[:n] for k, v in cols.items()}
        rest = {k: v[n:] for k, v in cols.items()}
        self._pending_rows -= n
        self._pending = [rest] if self._pending_rows else []
        return pd.DataFrame(
            {
                "symbol": self._names[head["sym"]],
                "event_time_ms": head["event_time_ms"],
                "price": head["price"],
                "size": head["size"],
                "bid": head["bid"],
                "ask": head["ask"],
                "stressed": head["stressed"],
            },
            columns=list(FRAME_COLUMNS),
        )

    def frames(self, total: int, chunk: int = 50_000) -> Iterator[pd.DataFrame]:
        """``total`` ticks in chunks of at most ``chunk`` rows."""
        left = total
        while left > 0:
            k = min(chunk, left)
            yield self.frame(k)
            left -= k
