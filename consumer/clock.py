"""The consumer's idea of now: wall-clock time that never runs backwards.

Event times are judged against it (a tick more than ``max_future_ms`` ahead is dead-lettered),
so a wall clock stepped back by NTP or an operator must not make every tick look like it
comes from the future. A step forward is taken as is.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class SteadyWallClock:
    def __init__(
        self,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
        mono_ms: Callable[[], int] = lambda: time.monotonic_ns() // 1_000_000,
    ) -> None:
        self._wall, self._mono = wall_ms, mono_ms
        self._base_wall, self._base_mono = wall_ms(), mono_ms()

    def __call__(self) -> int:
        """max(wall clock, last reading + monotonic time since): later steps back of the
        wall clock are ignored, steps forward are followed."""
        steady = self._base_wall + (self._mono() - self._base_mono)
        wall = self._wall()
        if wall > steady:  # stepped forward (or drifted ahead): follow it from here on
            self._base_wall, self._base_mono = wall, self._mono()
            return wall
        return steady
