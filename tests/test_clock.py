"""The consumer's clock ignores a wall clock stepped back and follows one stepped forward
(mutation: returning the wall clock as is fails the first test)."""

from __future__ import annotations

from consumer.clock import SteadyWallClock


class Fake:
    def __init__(self) -> None:
        self.wall = 1_700_000_000_000
        self.mono = 5_000

    def tick(self, ms: int) -> None:
        self.wall += ms
        self.mono += ms


def test_a_wall_clock_stepped_back_an_hour_is_ignored():
    f = Fake()
    clock = SteadyWallClock(lambda: f.wall, lambda: f.mono)
    f.tick(1_000)
    before = clock()
    f.wall -= 3_600_000  # NTP or an operator steps the clock back
    f.tick(500)
    assert clock() == before + 500


def test_a_wall_clock_stepped_forward_is_followed():
    f = Fake()
    clock = SteadyWallClock(lambda: f.wall, lambda: f.mono)
    f.wall += 60_000
    assert clock() == f.wall
    f.tick(250)
    assert clock() == f.wall
