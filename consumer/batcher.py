"""Micro-batches: one read of the ticks topic (at most max_rows ticks, max_wait_ms) becomes one
batch, one Predict call for its scored ticks; batches are answered strictly in the order they
were read, with at most max_in_flight of them outstanding."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

import grpc
from opentelemetry import trace

from market.ticks import Tick
from proto.volatility.v1 import predictor_pb2 as pb

Row = tuple[int, int, Tick]  # (partition, offset, tick)


@dataclass
class Batch:
    meta: list[Row]  # the scored ticks, one row each
    request: pb.PredictRequest | None
    future: grpc.Future | None  # None: nothing to score (every tick is warming up)
    started: float
    span: trace.Span
    call_span: trace.Span
    metadata: tuple = field(default=())
    warming: list[Row] = field(default_factory=list)
    order: bytes = b""  # per tick in arrival order: 1 scored (meta), 0 warming up
    backfill: set[tuple[int, int]] = field(default_factory=set)  # (partition, offset)
    answered: bool = False  # Predict's answer is in (``answer``), checked
    answer: pb.PredictResponse | None = None  # None once answered: scored ticks dead-lettered
    schema: object = None  # the schema check's state while the batch waits for ModelInfo

    def done(self) -> bool:
        """Its Predict call finished (or it made none)."""
        return self.answered or self.future is None or self.future.done()


def warming_only(warming: list[Row], backfill: set[tuple[int, int]]) -> Batch:
    """A batch of warming-up ticks: answered in order with the batches in flight, without
    a call."""
    span = trace.INVALID_SPAN
    order = bytes(len(warming))  # every tick warming up (all zeros)
    return Batch([], None, None, time.monotonic(), span, span, (), warming, order, backfill)


class InFlight(deque[Batch]):
    """The batches read and not yet answered, oldest first."""

    def __init__(self, bound: int) -> None:
        super().__init__()
        self.bound = bound

    def full(self) -> bool:
        return len(self) >= self.bound
