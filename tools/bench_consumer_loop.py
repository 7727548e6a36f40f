"""The consumer's loop in process: ``_handle`` + ``_complete`` over 60,000 synthetic ticks in
batches of 1,000, Kafka and the server replaced by fakes, so only the consumer's own Python is
timed (decode, features, answer checks, drift, output records). Prints us/tick, the median of
5 runs. The ticks span ~15 minutes of event time ending now, so 97 % of them are older than
backfill_min_age_s and have their headers read (none: the worst case for live ticks);
``--backfill`` gives every message the backfill header (history sent to warm symbols).

    python -m tools.bench_consumer_loop [--repo DIR] [--backfill]

``--repo``: another checkout (a worktree of an older commit, its built C extensions copied in)
to time that code with the same fakes, e.g. before/after a change in one session.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path


class Msg:
    __slots__ = ("_h", "_o", "_v")

    def __init__(self, o: int, v: bytes, h: list | None = None) -> None:
        self._o, self._v, self._h = o, v, h

    def error(self):
        return None

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes:
        return self._v

    def key(self):
        return None

    def headers(self) -> list | None:
        return self._h


class Producer:
    """Kafka taking every record at once. ``report_success``: an older checkout's producer,
    which reported every delivery to the record's callback."""

    def __init__(self, report_success: bool = False) -> None:
        self.report_success = report_success

    def produce(self, topic, value=None, key=None, headers=None, on_delivery=None) -> None:
        if self.report_success and on_delivery is not None:
            on_delivery(None, None)

    def poll(self, _t: float = 0) -> int:
        return 0

    def __len__(self) -> int:
        return 0


class Future:
    def __init__(self, resp) -> None:
        self.resp = resp

    def done(self) -> bool:
        return True

    def result(self):
        return self.resp


class Stub:
    """Answers every batch (probability 0.25, threshold 0.5) and ModelInfo."""

    def __init__(self, pb, names: tuple[str, ...]) -> None:
        self.pb, self.names, self.Predict = pb, names, self

    def future(self, req, timeout=None, metadata=None) -> Future:
        n = len(req.packed.float32_le) // (4 * len(self.names))
        return Future(
            self.pb.PredictResponse(
                probabilities=[0.25] * n, labels=[False] * n, artifact="m", decision_threshold=0.5
            )
        )

    def ModelInfo(self, req, timeout=None):
        return self.pb.ModelInfoResponse(feature_names=self.names, manifest_json="{}")


class Consumer:
    def assignment(self) -> list:
        return []

    def pause(self, _a) -> None: ...

    def resume(self, _a) -> None: ...


def pipeline(s, consumer, stub, metrics, tracer):
    """This checkout's Pipeline, or an older one's (before a2119dc it took no failure list
    and acknowledged each record in its delivery callback)."""
    from consumer.pipeline import Pipeline

    try:
        from consumer.outputs import DeliveryFailures
    except ImportError:
        return Pipeline(s, consumer, Producer(report_success=True), stub, metrics, tracer)
    return Pipeline(s, consumer, Producer(), stub, metrics, tracer, DeliveryFailures())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repo", type=Path, default=Path(__file__).resolve().parent.parent)
    p.add_argument("--backfill", action="store_true", help="every tick marked backfill")
    args = p.parse_args()
    sys.path.insert(0, str(args.repo))
    from opentelemetry import trace
    from prometheus_client import CollectorRegistry

    from consumer.config import ConsumerSettings
    from consumer.messages import encode_row
    from consumer.metrics import ConsumerMetrics
    from consumer.offsets import PartitionAcks
    from market.features import FEATURE_NAMES
    from market.synthetic import SyntheticTicks
    from proto.volatility.v1 import predictor_pb2 as pb

    f = SyntheticTicks(seed=3).frame(60_000)
    t = f["event_time_ms"].to_numpy()
    t = t - t[-1] + int(time.time() * 1000) - 1000
    cols = (f["symbol"], t, f["price"], f["size"], f["bid"], f["ask"])
    values = [encode_row(s, int(ti), pr, z, b, a) for s, ti, pr, z, b, a in zip(*cols, strict=True)]
    runs = []
    for _ in range(5):
        s = ConsumerSettings(
            live_sample_dir=Path("/tmp/bench-live"), drift_report_metrics=Path("/tmp/none")
        )
        metrics = ConsumerMetrics(CollectorRegistry(), None)
        stub = Stub(pb, FEATURE_NAMES)
        pl = pipeline(s, Consumer(), stub, metrics, trace.get_tracer("b"))
        pl.acks[0] = PartitionAcks()
        headers = [("backfill", b"1")] if args.backfill else None
        msgs = [Msg(i, v, headers) for i, v in enumerate(values)]
        t0 = time.perf_counter()
        for lo in range(0, len(msgs), 1000):
            pl._handle(msgs[lo : lo + 1000])  # type: ignore[arg-type]
            pl._complete(drain=True)
            if hasattr(pl.outputs, "settle"):  # acknowledgements: per record before a2119dc
                pl.outputs.settle()
        runs.append((time.perf_counter() - t0) / len(msgs) * 1e6)
    shown = ", ".join(f"{r:.2f}" for r in runs)
    print(f"{args.repo}: {statistics.median(runs):.2f} us/tick (runs {shown})")


if __name__ == "__main__":
    main()
