"""Seeded synthetic crypto-like ticks for load tests and streams of any length.

A shared two-state volatility regime (calm / stressed, Markov-switching) drives every
symbol: in the stressed regime trades arrive faster, returns are larger, jumps are more
likely and spreads widen. Same seed and arguments -> same ticks, chunk by chunk.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

START_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@dataclass(frozen=True)
class SymbolSpec:
    name: str
    price: float
    weight: float  # share of all trades
    sigma: float  # per-trade log-return std in the calm regime
    spread_bps: float  # typical quoted spread in the calm regime


DEFAULT_SYMBOLS = (
    SymbolSpec("BTC-USD", 65_000.0, 0.45, 0.000015, 0.6),
    SymbolSpec("ETH-USD", 3_200.0, 0.30, 0.000020, 1.0),
    SymbolSpec("SOL-USD", 150.0, 0.15, 0.000025, 2.5),
    SymbolSpec("DOGE-USD", 0.15, 0.10, 0.000030, 5.0),
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
    """An endless, reproducible tick stream; ``frames`` yields it in chunks."""

    def __init__(
        self,
        symbols: tuple[SymbolSpec, ...] = DEFAULT_SYMBOLS,
        seed: int = 7,
        rate_per_s: float = 50.0,
        start_ms: int = START_MS,
        calm_run: float = 20_000.0,
        stress_run: float = 3_000.0,
    ) -> None:
        self.symbols = symbols
        self._rng = np.random.default_rng(seed)
        self._rate = rate_per_s
        self._t = float(start_ms)
        self._prices = np.array([s.price for s in symbols], dtype=np.float64)
        self._weights = np.array([s.weight for s in symbols]) / sum(s.weight for s in symbols)
        self._stressed = True  # the first run flips this: streams start calm
        self._left_in_run = 0
        self._mean_run = {False: calm_run, True: stress_run}

    def _regimes(self, n: int) -> np.ndarray:
        out = np.empty(n, dtype=bool)
        i = 0
        while i < n:
            if self._left_in_run == 0:
                self._stressed = not self._stressed
                self._left_in_run = int(self._rng.geometric(1.0 / self._mean_run[self._stressed]))
            k = min(self._left_in_run, n - i)
            out[i : i + k] = self._stressed
            self._left_in_run -= k
            i += k
        return out

    def frame(self, n: int) -> pd.DataFrame:
        """The next ``n`` ticks of the stream (all symbols interleaved, time-ordered)."""
        rng = self._rng
        stressed = self._regimes(n)
        scale = np.where(stressed, 3.5, 1.0)
        gaps = rng.exponential(1000.0 / self._rate, n) / np.where(stressed, 3.0, 1.0)
        times = self._t + np.cumsum(gaps)
        self._t = float(times[-1]) if n else self._t
        sym = rng.choice(len(self.symbols), size=n, p=self._weights)
        sigma = np.array([s.sigma for s in self.symbols])[sym] * scale
        jumps = rng.random(n) < np.where(stressed, 2e-3, 1e-4)
        rets = rng.standard_normal(n) * sigma + jumps * rng.standard_normal(n) * sigma * 25
        price = np.empty(n)
        for k in range(len(self.symbols)):
            mask = sym == k
            path = self._prices[k] * np.exp(np.cumsum(rets[mask]))
            price[mask] = path
            if path.size:
                self._prices[k] = path[-1]
        spread_bps = np.array([s.spread_bps for s in self.symbols])[sym] * scale
        spread = price * spread_bps * 1e-4 * rng.lognormal(0.0, 0.25, n)
        return pd.DataFrame(
            {
                "symbol": np.array([s.name for s in self.symbols], dtype=object)[sym],
                "event_time_ms": times.astype(np.int64),
                "price": price,
                "size": np.round(rng.lognormal(-1.0, 1.2, n), 6),
                "bid": price - spread / 2,
                "ask": price + spread / 2,
            }
        )

    def frames(self, total: int, chunk: int = 50_000) -> Iterator[pd.DataFrame]:
        """``total`` ticks in chunks of at most ``chunk`` rows."""
        left = total
        while left > 0:
            k = min(chunk, left)
            yield self.frame(k)
            left -= k
