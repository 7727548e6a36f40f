"""Real-data samples for the drift report's worked example (docs/drift.md): the quiet
overnight session of the real ES ticks as the reference, the first cash hour as the live
sample, written where `drift.report` reads them.

    python -m tools.drift_example [--out reports/drift-example]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from consumer.drift import LiveSample
from market import features, realdata
from market.features import FEATURE_NAMES

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "drift-example")
    args = p.parse_args()
    ticks = realdata.load()
    x = features.compute_frame(ticks).to_numpy(np.float32)
    ts = pd.to_datetime(ticks["event_time_ms"], unit="ms")
    quiet = ((ts >= "2013-09-02 16:00") & (ts < "2013-09-03 02:00")).to_numpy()
    busy = ((ts >= "2013-09-03 08:30") & (ts < "2013-09-03 09:30")).to_numpy()
    rng = np.random.default_rng(1)
    ref = x[quiet][rng.choice(quiet.sum(), 5_000, replace=False)]
    live = x[busy][rng.choice(busy.sum(), 10_000, replace=False)]
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(ref, columns=list(FEATURE_NAMES)).to_parquet(args.out / "reference.parquet")
    sample = LiveSample(args.out / "live", len(live), 0, "es-cash-open")
    sample.add("xgb-v2", FEATURE_NAMES, live, np.zeros(len(live), np.float32))
    sample.flush()
    print(f"reference: {len(ref):,} overnight rows; live: {len(live):,} cash-open rows")


if __name__ == "__main__":
    main()
