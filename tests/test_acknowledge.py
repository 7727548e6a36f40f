"""A settled generation's acknowledgements: the C loop (consumer/_acks.h) against its
Python reference, with failed outputs, partitions no longer ours and odd input."""

from __future__ import annotations

import random
from typing import NamedTuple

import pytest

from consumer import offsets
from consumer.offsets import PartitionAcks, acknowledge_py
from market.ticks import Tick


def test_acknowledgements_get_the_c_loop():
    """Built by `make models` (make test, make test-fast): never compared against itself."""
    assert offsets.acknowledge is not acknowledge_py
    assert offsets.acknowledge.__module__ == "consumer._wire"


def generation(seed: int) -> tuple[list[list], set]:
    rng = random.Random(seed)
    groups: list[list] = []
    offs = dict.fromkeys(range(5), 0)
    for _ in range(rng.randint(0, 12)):
        group = []
        for _ in range(rng.randint(0, 50)):
            p = rng.choice(range(5))  # 3 and 4 are not ours
            offs[p] += 1
            t = 1_700_000_000_000 + rng.randint(0, 10**6)
            group.append((p, offs[p], Tick("S", t, 1.0, 1.0, float("nan"), float("nan"))))
        groups.append(group)
    rows = [r for g in groups for r in g]
    failed = {(r[0], r[1]) for r in rng.sample(rows, min(len(rows), rng.randint(0, 5)))}
    return groups, failed


def acks_after(fn, groups: list[list], failed: set) -> dict:
    acks = {p: PartitionAcks() for p in range(3)}
    acks[0].acked[-1] = 7  # what was there stays
    fn(groups, acks, failed)
    return {p: a.acked for p, a in acks.items()}


@pytest.mark.parametrize("seed", range(20))
def test_the_c_loop_acknowledges_what_the_python_loop_does(seed):
    groups, failed = generation(seed)
    c = acks_after(offsets.acknowledge, groups, failed)
    assert c == acks_after(acknowledge_py, groups, failed)
    for p, off in failed:
        assert off not in c.get(p, {})
    n = sum(1 for g in groups for p, off, _ in g if p < 3 and (p, off) not in failed)
    assert sum(len(a) for a in c.values()) == n + 1


TICK = Tick("S", 1, 1.0, 1.0, 0.0, 0.0)


class Stamped(NamedTuple):  # another row type: its event time is not its second field
    event_time_ms: int
    symbol: str


@pytest.mark.parametrize(
    ("groups", "error"),
    [
        ([[(0, 1)]], TypeError),  # Python: ValueError (unpacking)
        ([((0, 1, TICK),)], TypeError),  # groups are lists (Python takes any iterable)
        ([None], TypeError),
        ([[(0, 1, (5,))]], AttributeError),  # as Python: a row's tick has event_time_ms
    ],
)
def test_odd_rows_are_an_error_not_a_crash(groups, error):
    with pytest.raises(error):
        offsets.acknowledge(groups, {0: PartitionAcks()}, set())


def test_rows_and_acks_of_other_shapes_are_read_as_python_reads_them():
    class Acked(dict):  # a dict whose writes are watched
        def __setitem__(self, k, v) -> None:
            super().__setitem__(k, ("seen", v))

    groups = [[(0, 1, Stamped(99, "S")), (1, 2, TICK), (2, 3, TICK), (0, 4, TICK)]]
    for fn in (offsets.acknowledge, acknowledge_py):
        acks: dict = {0: PartitionAcks(), 1: None, 2: PartitionAcks()}
        acks[2].acked = Acked()
        fn(groups, acks, {(0, 4)})
        assert acks[0].acked == {1: 99}, fn
        assert acks[2].acked == {3: ("seen", 1)}, fn
