"""``python -m tools.bench_features [--synthetic-symbols 1000]``: per-tick cost of
``FeatureState.update`` (the C port the consumer uses) on the real ticks (or a quoted
multi-symbol stream), against its Python reference ``PyFeatureState`` and the 11-feature
version they replaced (read from git at ``--baseline``), all in this process, alternating,
median of ``--repeats``."""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from market import features, realdata
from market.synthetic import SyntheticTicks, universe

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "46407f1"  # the last commit with the raw-level 11 features


def load_baseline(commit: str):
    src = subprocess.run(
        ["git", "show", f"{commit}:market/features.py"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "features_baseline.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("features_baseline", path)
    assert spec is not None and spec.loader is not None  # a .py path always has both
    mod = importlib.util.module_from_spec(spec)
    sys.modules["features_baseline"] = mod
    spec.loader.exec_module(mod)
    return mod


def per_tick_us(state, cols: list[list]) -> float:
    states: dict = {}
    t0 = time.perf_counter()
    for sym, t, p, z, b, a in zip(*cols, strict=True):
        st = states.get(sym)
        if st is None:
            st = states[sym] = state()
        st.update(t, p, z, b, a)
    return (time.perf_counter() - t0) / len(cols[0]) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--ticks", type=int, default=200_000)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--baseline", default=BASELINE)
    p.add_argument(
        "--synthetic-symbols",
        type=int,
        default=0,
        help="instead of the real ticks: the generator's stream over this many quoted symbols",
    )
    a = p.parse_args()
    old = load_baseline(a.baseline)
    if a.synthetic_symbols:
        gen = SyntheticTicks(symbols=universe(a.synthetic_symbols), seed=1)
        ticks, what = gen.frame(a.ticks), f"synthetic ticks of {a.synthetic_symbols} symbols"
    else:
        ticks, what = realdata.load().iloc[: a.ticks], "real ticks"
    cols = [ticks[c].tolist() for c in ("symbol", "event_time_ms", "price", "size", "bid", "ask")]
    arms = {
        "baseline": old.FeatureState,
        "reference": features.PyFeatureState,
        "current": features.FeatureState,
    }
    runs: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(a.repeats):
        for k, state in arms.items():
            runs[k].append(per_tick_us(state, cols))
    b, r, c = (statistics.median(runs[k]) for k in arms)
    print(
        f"FeatureState.update on {a.ticks:,} {what}, median of {a.repeats}: "
        f"baseline ({a.baseline}, {len(old.FEATURE_NAMES)} features, Python) {b:.2f} us/tick, "
        f"Python reference ({features.N_FEATURES} features) {r:.2f} us/tick, "
        f"C ({features.FeatureState.__module__}) {c:.2f} us/tick; "
        f"C vs baseline {c / b:.2f}x, C vs reference {c / r:.2f}x"
    )


if __name__ == "__main__":
    main()
