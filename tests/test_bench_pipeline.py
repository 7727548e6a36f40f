"""make bench-pipeline's summary: medians over rounds, each figure beside its anchor."""

from __future__ import annotations

import pytest

from tools.bench_pipeline import _anchor, _median


def test_medians_are_taken_per_column_over_rounds():
    rounds = [
        {"rate": 50000.0, "throughput": t, "p95": p, "label": "50000", "answered": a}
        for t, p, a in ((50_100.0, 60.0, 10), (49_000.0, 300.0, 12), (50_200.0, 55.0, 11))
    ]
    m = _median(rounds)
    assert (m["throughput"], m["p95"], m["answered"]) == (50_100.0, 60.0, 11)
    assert m["rate"] == 50000.0 and m["label"] == "50000" and m["rounds"] == 3


@pytest.mark.parametrize(
    ("res", "says"),
    [
        ({"rate": 50000.0, "throughput": 50_100.0, "p95": 60.0}, "24% of the 250 ms goal: met"),
        ({"rate": 50000.0, "throughput": 50_100.0, "p95": 260.0}, "104% of the 250 ms goal: not"),
        ({"rate": 50000.0, "throughput": 40_000.0, "p95": 60.0}, "goal: not met"),  # behind
        (
            {"rate": None, "throughput": 95_000.0, "floor": 190_000.0},
            "95,000 ticks/s = 50% of the Kafka floor 190,000/s; goal 100,000/s: not met",
        ),
        (
            {"rate": None, "throughput": 120_000.0, "floor": 130_000.0},
            "= 92% of the Kafka floor 130,000/s; goal 100,000/s: met",
        ),
    ],
)
def test_each_figure_is_printed_beside_its_anchor_and_judged(res, says):
    assert says in _anchor(res)
