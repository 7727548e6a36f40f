"""``make demo`` (for now): stream ticks through the feature code and a compiled model
in-process and print live figures once a second.

The gRPC server, the Kafka pipeline and the dashboards are later issues; until they
land this shows the part that exists: per-symbol incremental features -> micro-batch ->
verified native predict.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from compiled_models import runtime
from market.features import N_FEATURES, FeatureState
from market.synthetic import SyntheticTicks

ROOT = Path(__file__).resolve().parent
NOT_BUILT = "gRPC server, Kafka broker/consumer, Prometheus/Grafana: not built yet"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="xgb-v2")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--batch", type=int, default=256, help="rows per predict call")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    model = runtime.load(ROOT / args.model)
    print(f"model {model.name} sha256 {model.sha256[:16]} threshold {model.threshold:.3f}")
    print(f"[demo] {NOT_BUILT}; running features + compiled model in-process")
    stream = SyntheticTicks(seed=args.seed)  # event time at market pace, scored flat out
    states: dict[str, FeatureState] = {}
    buf = np.empty((args.batch, N_FEATURES), np.float32)
    end = time.monotonic() + args.seconds
    next_report = time.monotonic() + 1.0
    ticks = spikes = 0
    call_us: list[float] = []
    while time.monotonic() < end:
        frame = stream.frame(args.batch)
        cols = [frame[c].tolist() for c in ("symbol", "event_time_ms", "price", "size")]
        bids, asks = frame["bid"].tolist(), frame["ask"].tolist()
        for i, (sym, t, p, z) in enumerate(zip(*cols, strict=True)):
            st = states.get(sym) or states.setdefault(sym, FeatureState())
            buf[i] = st.update(t, p, z, bids[i], asks[i])
        t0 = time.perf_counter()
        prob = model.predict(buf)
        call_us.append((time.perf_counter() - t0) * 1e6)
        ticks += len(prob)
        spikes += int((prob >= model.threshold).sum())
        if time.monotonic() >= next_report:
            p50, p95 = np.percentile(call_us, [50, 95])
            print(
                f"ticks {ticks:>9,}  spike-rate {spikes / ticks:6.2%}  "
                f"predict/{args.batch} rows p50 {p50:6.1f} us p95 {p95:6.1f} us"
            )
            call_us.clear()
            next_report += 1.0
    print(f"done: {ticks:,} ticks scored in {args.seconds:.0f} s")


if __name__ == "__main__":
    main()
