"""Per-(partition, symbol) feature state, bounded by construction.

A symbol's state is worth keeping only while its next tick could continue its history:
``FeatureState`` starts a symbol's history again after a gap of more than ``WARMUP_MS``
(300 s) of event time, so a symbol that has not traded for ``WARMUP_MS`` plus a slack
(ticks of one partition are not perfectly time-ordered across symbols; the slack is the
consumer's ``max_future_ms`` plus a minute) holds nothing a later tick can use: it is
evicted by ``sweep``, judged against the newest event time seen on its partition.

That bounds state by the symbols trading in the last ~6 minutes, not by every symbol ever
seen. A hostile or broken producer can still send many distinct symbols inside that span,
so the number of symbols is capped too (``max_symbols``): past it, the tenth of the symbols
with the oldest clocks is evicted (they are the least likely to be warm). An evicted symbol
that trades again starts cold (warming up for 300 s), which is the cost of the bound; both
kinds of eviction are counted.

Inside one symbol, a tick older than its clock counts as arriving at the clock (late ticks
cannot rewind the windows), so late ticks pile up while the clock stands still: a tick that
would make its symbol hold more than ``max_window_ticks`` ticks in its 300 s window is refused
(``flooded``; the pipeline dead-letters it, ``symbol_flood``). Late ticks are not refused for
being late: a corrected tick re-driven from the dead-letter topic, or a replay with its
original times, is late by design and still gets its answer.
"""

from __future__ import annotations

from market.features import WARMUP_MS, FeatureState

SWEEP_SLACK_MS = 60_000
"""Beyond WARMUP_MS and max_future_ms: how far behind its partition's newest event time a
symbol's clock may be before its state is dropped."""


class SymbolStates:
    def __init__(self, max_symbols: int, max_window_ticks: int, max_future_ms: int) -> None:
        self.max_symbols = max_symbols
        self.max_window_ticks = max_window_ticks
        self.idle_ms = WARMUP_MS + max_future_ms + SWEEP_SLACK_MS
        self.states: dict[tuple[int, str], FeatureState] = {}
        self.evicted = {"idle": 0, "cap": 0}

    def __len__(self) -> int:
        return len(self.states)

    def get(self, p: int, symbol: str) -> FeatureState:
        st = self.states.get((p, symbol))
        if st is None:
            if len(self.states) >= self.max_symbols:
                self._shrink()
            st = self.states[(p, symbol)] = FeatureState()
        return st

    def flooded(self, st: FeatureState) -> bool:
        """A tick may not update ``st``: it holds max_window_ticks (``flood_reason`` why)."""
        return st.held >= self.max_window_ticks

    def flood_reason(self, st: FeatureState) -> str:
        return (
            f"the symbol already holds {st.held} ticks in its 300 s window "
            f"(at most {self.max_window_ticks})"
        )

    def sweep(self) -> int:
        """Drop the symbols that can no longer be warm; returns how many."""
        newest: dict[int, int] = {}
        for (p, _), st in self.states.items():
            t = st.last_t
            if t > newest.get(p, -(2**63)):
                newest[p] = t
        stale = [k for k, st in self.states.items() if newest[k[0]] - st.last_t > self.idle_ms]
        for k in stale:
            del self.states[k]
        self.evicted["idle"] += len(stale)
        return len(stale)

    def _shrink(self) -> None:
        """At the cap: first the idle ones, then the tenth with the oldest clocks."""
        if self.sweep() and len(self.states) < self.max_symbols:
            return
        n = max(1, len(self.states) // 10)
        oldest = sorted(self.states, key=lambda k: self.states[k].last_t)[:n]
        for k in oldest:
            del self.states[k]
        self.evicted["cap"] += n

    def drop_partitions(self, partitions: list[int]) -> None:
        self.states = {k: v for k, v in self.states.items() if k[0] not in partitions}
