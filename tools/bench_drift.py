"""What continuous drift costs the consumer per micro-batch: counting a batch's features and
predictions into the reference bins plus the live-sample copy, against the consumer's whole
per-batch budget (decode, features, Predict, produce) measured by `make bench-pipeline`.

    python -m tools.bench_drift
"""

from __future__ import annotations

import json
import statistics
import tempfile
import timeit
from pathlib import Path

import numpy as np

from consumer.drift import ArtifactBins, LiveSample
from market import features
from market.features import FEATURE_NAMES
from market.synthetic import SyntheticTicks

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    manifest = json.loads((ROOT / "compiled_models" / "xgb-v2" / "manifest.json").read_text())
    x_all = features.compute_frame(SyntheticTicks(seed=5).frame(20_000)).to_numpy(np.float32)
    probs_all = np.random.default_rng(0).random(len(x_all)).astype(np.float32)
    sample = LiveSample(Path(tempfile.mkdtemp()), 10_000, 1e9, "bench")
    print(f"{'rows/batch':>10} {'drift us/batch':>15} {'us/row':>7}")
    for rows in (50, 200, 1000):
        ab = ArtifactBins("xgb-v2", manifest)
        x, p = np.ascontiguousarray(x_all[:rows]), probs_all[:rows]

        def step(ab=ab, x=x, p=p) -> None:
            ab.observe(x, p)
            sample.add("xgb-v2", FEATURE_NAMES, x, p)

        n = 2_000 if rows < 1000 else 500
        times = [t / n * 1e6 for t in timeit.repeat(step, number=n, repeat=7)]
        med = statistics.median(times)
        print(f"{rows:>10} {med:>15.1f} {med / rows:>7.3f}")


if __name__ == "__main__":
    main()
