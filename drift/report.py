"""`make drift`: Evidently's data-drift report of the live sample against the reference
sample of the artifact that scored each row, as HTML and JSON in reports/drift/, a printed
summary, and an exit code a scheduled job can gate on. Runs in its own environment
(.venv-drift: Evidently is ~1 GB and slow to import), never inside the server or the consumer.

    .venv-drift/bin/python -m drift.report [--artifact xgb-v2] [--live .run/live-sample]

The live sample is what the consumers write (consumer/drift.py LiveSample): a uniform sample
of the rows scored over their last 20 minutes, each with the artifact that scored it. Each
artifact with at least --min-rows rows is compared with its own reference (after a rollback,
the rows of each side with their own); --artifact keeps one.

The method is pinned: PSI with a 0.2 threshold for every numeric column (Evidently's default
switches between Wasserstein distance and a K-S p-value at 1,000 rows, which flips what a
"drift score" means). A feature with no value at all on one side (the ES data has no bid/ask)
cannot go through Evidently; it is judged by the share of missing values with the same bins
and PSI the continuous monitor uses (drift/bins.py), and says so.

Exit codes: 0 no drift, 1 the share of drifted features of some artifact is above
--max-drifted-share, 2 the inputs are unusable (missing, malformed, too small), with the
reason.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from drift import bins as db

ROOT = Path(__file__).resolve().parent.parent
METHOD, THRESHOLD = "psi", 0.2
MISSING_SHARE = "missing-share psi (no values on one or both sides)"


class SampleError(ValueError):
    """The samples cannot give a meaningful report; ``str()`` says why."""


def load_live(path: Path) -> tuple[pd.DataFrame, pd.Series, str]:
    """Every live-sample file (one per consumer) in ``path``: the rows, the artifact that
    scored each, and what they cover (printed)."""
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files or not files[0].exists():
        raise SampleError(
            f"no live sample in {path}: is a consumer running? (it writes every 30 s)"
        )
    frames, arts, covers, names = [], [], [], None
    for f in files:
        try:
            with np.load(f, allow_pickle=False) as z:
                x, file_names = z["x"], tuple(str(n) for n in z["names"])
                artifacts = z["artifacts"].astype(str)
                window, seen = float(z["window_s"]), int(z["seen"])
        except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile) as exc:
            raise SampleError(f"live sample {f} is unreadable: {exc}") from None
        names = names or file_names
        if file_names != names:
            raise SampleError(f"live sample {f} has features {list(file_names)}, not {list(names)}")
        if x.ndim != 2 or x.shape[1] != len(names) or len(artifacts) != len(x):
            raise SampleError(f"live sample {f} has shape {x.shape}, not [rows, {len(names)}]")
        frames.append(pd.DataFrame(x.astype(np.float64), columns=list(names)))
        arts.append(pd.Series(artifacts))
        covers.append(f"{f.name}: {len(x):,} of {seen:,} rows scored over the last {window:g} s")
    return (
        pd.concat(frames, ignore_index=True),
        pd.concat(arts, ignore_index=True),
        "\n".join(covers),
    )


def compare(
    reference: pd.DataFrame, live: pd.DataFrame, min_rows: int, drift_share: float
) -> tuple[dict, Any]:
    """Per-feature verdicts and Evidently's snapshot (None if no column could go through it).
    The snapshot is typed ``Any``: Evidently is imported lazily, from ``.venv-drift`` only."""
    for name, frame in (("reference", reference), ("live", live)):
        if len(frame) < min_rows:
            raise SampleError(
                f"{name} sample has {len(frame)} rows; at least {min_rows} are needed for a "
                "meaningful test"
            )
    names = list(reference.columns)
    both = [c for c in names if reference[c].notna().any() and live[c].notna().any()]
    verdicts: dict[str, dict] = {}
    snapshot = None
    if both:
        warnings.filterwarnings("ignore", category=RuntimeWarning)  # all-NaN stats inside
        from evidently import Report
        from evidently.presets import DataDriftPreset

        report = Report(
            [DataDriftPreset(method=METHOD, threshold=THRESHOLD, drift_share=drift_share)]
        )
        snapshot = report.run(live[both], reference[both])
        for m in snapshot.dict()["metrics"]:
            col = m.get("config", {}).get("column")
            if col in both and m.get("config", {}).get("type", "").endswith("ValueDrift"):
                score = float(m["value"])
                verdicts[col] = {"method": "evidently psi", "statistic": score,
                                 "threshold": THRESHOLD, "drifted": score >= THRESHOLD}  # fmt: skip
    for c in names:
        if c in verdicts:
            continue
        b = db.fit(reference[c].to_numpy())  # presence on one side only: missing-share PSI
        counts = db.count(b, live[c].to_numpy())
        score = db.psi(b.shares, counts / counts.sum())
        verdicts[c] = {"method": MISSING_SHARE, "statistic": score,
                       "threshold": THRESHOLD, "drifted": score >= THRESHOLD}  # fmt: skip
    return {c: verdicts[c] for c in names}, snapshot


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--artifact", help="only the rows this artifact scored (default: each)")
    p.add_argument("--models-dir", type=Path, default=ROOT / "compiled_models")
    p.add_argument("--live", type=Path, default=ROOT / ".run" / "live-sample")
    p.add_argument("--reference", type=Path, help="with --artifact; default: its reference.parquet")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "drift")
    p.add_argument("--min-rows", type=int, default=200)
    p.add_argument("--max-drifted-share", type=float, default=0.5)
    args = p.parse_args()
    try:
        live, scored_by, covers = load_live(args.live)
        wanted = [args.artifact] if args.artifact else sorted(scored_by.unique())
        results = {}
        for artifact in wanted:
            rows = live[(scored_by == artifact).to_numpy()]
            if not args.artifact and len(rows) < args.min_rows:
                print(f"note: {artifact} scored only {len(rows)} rows of the sample: not judged")
                continue
            results[artifact] = judge(artifact, rows, args)
        if not results:
            raise SampleError(
                f"live sample has no artifact with {args.min_rows} rows "
                f"({dict(scored_by.value_counts())})"
            )
    except SampleError as exc:
        print(f"drift: {exc}", file=sys.stderr)
        sys.exit(2)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    main_artifact = max(results, key=lambda a: results[a]["live_rows"])
    summary = {
        "artifact": main_artifact,  # the one that scored most of the sample
        "timestamp": time.time(),
        "drifted_share": results[main_artifact]["drifted_share"],
        "max_drifted_share": args.max_drifted_share,
        "live": covers,
        **{k: results[main_artifact][k] for k in ("reference_rows", "live_rows", "features")},
        "artifacts": {
            a: {k: v for k, v in r.items() if k != "snapshot"} for a, r in results.items()
        },
    }
    for artifact, r in results.items():
        if r["snapshot"] is not None:
            r["snapshot"].save_html(str(args.out / f"drift-{stamp}-{artifact}.html"))
            r["snapshot"].save_json(str(args.out / f"drift-{stamp}-{artifact}.evidently.json"))
    (args.out / f"drift-{stamp}.json").write_text(json.dumps(summary["artifacts"], indent=2))
    tmp = args.out / "metrics.json.tmp"
    tmp.write_text(json.dumps(summary))
    tmp.replace(args.out / "metrics.json")  # the consumer exports it (report age, share)
    print(f"live sample: {covers}")
    worst = 0.0
    for artifact, r in results.items():
        print(f"{artifact}: reference {r['reference_rows']:,} rows vs live {r['live_rows']:,} rows")
        for name, v in r["features"].items():
            verdict = "DRIFT" if v["drifted"] else "ok"
            print(
                f"  {name:<18} {v['statistic']:8.3f} >= {v['threshold']} ? {verdict:<5} "
                f"({v['method']})"
            )
        print(
            f"{artifact}: drifted features: {r['drifted_share']:.0%} "
            f"(gate: {args.max_drifted_share:.0%})"
        )
        worst = max(worst, r["drifted_share"])
    print(f"report in {args.out}")
    sys.exit(1 if worst > args.max_drifted_share else 0)


def judge(artifact: str, live: pd.DataFrame, args: argparse.Namespace) -> dict:
    """One artifact's rows against its reference sample."""
    ref_path = args.reference or args.models_dir / artifact / "reference.parquet"
    try:
        reference = pd.read_parquet(ref_path)
    except (OSError, ValueError) as exc:
        raise SampleError(f"reference sample {ref_path} is unreadable: {exc}") from None
    if tuple(reference.columns) != tuple(live.columns):
        raise SampleError(
            f"live sample has features {list(live.columns)}; {artifact}'s reference has "
            f"{list(reference.columns)}"
        )
    verdicts, snapshot = compare(reference, live, args.min_rows, args.max_drifted_share)
    return {
        "reference_rows": len(reference),
        "live_rows": len(live),
        "drifted_share": sum(v["drifted"] for v in verdicts.values()) / len(verdicts),
        "features": verdicts,
        "snapshot": snapshot,
    }


if __name__ == "__main__":
    main()
