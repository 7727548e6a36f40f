"""A settled generation's acknowledgements: the C loop (consumer/_acks.h) against its
Python reference, with failed outputs, partitions no longer ours and odd input."""

from __future__ import annotations

import random

import pytest

from consumer import offsets
from consumer.offsets import PartitionAcks, acknowledge_py
from market.ticks import Tick

pytestmark = pytest.mark.skipif(
    offsets.acknowledge is acknowledge_py, reason="consumer/_wire is not built (make models)"
)


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


@pytest.mark.parametrize(
    "groups",
    [[[(0, 1)]], [[(0, 1, (5,))]], [((0, 1, Tick("S", 1, 1.0, 1.0, 0.0, 0.0)),)], [None]],
)
def test_odd_rows_are_a_type_error_not_a_crash(groups):
    with pytest.raises(TypeError):
        offsets.acknowledge(groups, {0: PartitionAcks()}, set())
