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


def load_baseline_c(commit: str):
    """The baseline's C port, built from git into a temporary folder (None: it had none)."""
    import sysconfig

    show = subprocess.run(
        ["git", "show", f"{commit}:market/_featurestate.c"], cwd=ROOT, capture_output=True
    )
    if show.returncode != 0:
        return None
    tmp = Path(tempfile.mkdtemp())
    (tmp / "_featurestate.c").write_bytes(show.stdout)
    out = tmp / ("_featurestate" + sysconfig.get_config_var("EXT_SUFFIX"))
    include = sysconfig.get_paths()["include"]
    cmd = ["gcc", "-O2", "-ffp-contract=off", "-shared", "-fPIC", f"-I{include}"]
    subprocess.run([*cmd, str(tmp / "_featurestate.c"), "-lm", "-o", str(out)], check=True)
    spec = importlib.util.spec_from_file_location("_featurestate", out)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.FeatureState


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
    # the baseline's own Python state (its module imports today's C port, if built)
    arms = {"baseline Python": getattr(old, "PyFeatureState", old.FeatureState)}
    old_c = load_baseline_c(a.baseline)
    if old_c is not None:
        arms["baseline C"] = old_c
    arms |= {"Python reference": features.PyFeatureState, "C": features.FeatureState}
    runs: dict[str, list[float]] = {k: [] for k in arms}
    for _ in range(a.repeats):
        for k, state in arms.items():
            runs[k].append(per_tick_us(state, cols))
    med = {k: statistics.median(v) for k, v in runs.items()}
    n_old, n_new = len(old.FEATURE_NAMES), features.N_FEATURES
    print(
        f"FeatureState.update on {a.ticks:,} {what}, median of {a.repeats} "
        f"(baseline {a.baseline}, {n_old} features; current {n_new} features): "
        + ", ".join(f"{k} {v:.2f} us/tick" for k, v in med.items())
        + f"; Python {med['Python reference'] / med['baseline Python']:.2f}x the baseline's"
        + (f", C {med['C'] / med['baseline C']:.2f}x the baseline's" if old_c else "")
    )


if __name__ == "__main__":
    main()
