"""`make drift`: Evidently's data-drift report of the live sample against the reference
sample of the artifact that scored each row, as HTML and JSON in reports/drift/, a printed
summary, and an exit code a scheduled job can gate on. Runs in its own environment
(.venv-drift: Evidently is ~1 GB and slow to import), never inside the server or the consumer.

    .venv-drift/bin/python -m drift.report [--artifact xgb-v2] [--live .run/live-sample]
        [--model-config .run/model.toml]

The live sample is what the consumers write (consumer/drift.py LiveSample): a uniform sample
of the rows scored over their last 20 minutes, each with the artifact that scored it. Each
artifact with at least --min-rows rows is compared with its own reference (after a rollback,
the rows of each side with their own); --artifact keeps one. The headline (the summary's
``artifact`` and ``drifted_share``) is the artifact the live model config names - the one the
server serves now, read with the servers' reader from the servers' ``model_config`` setting
(config/settings.toml: --model-config, VOLSPIKE_MODEL_CONFIG; `make drift` passes the
.run/model.toml that `make rollback` edits) - so right after a rollback it is the new artifact,
not the one that scored most of the sample; until the new one has --min-rows rows the report
says so and headlines the one that scored most.

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

from config.model_config import read_model_config
from config.settings import main_settings
from config.settings_gen import DriftSettings
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


def served_artifact(model_config: Path) -> tuple[str | None, str]:
    """The artifact the live model config names (what the server serves once it has
    loaded it), or None and why not: a report must not fail because the config is missing
    (no server ever ran here) or half-written (the server keeps its model then too)."""
    try:
        return read_model_config(model_config).artifact, ""
    except (OSError, ValueError) as exc:
        return None, f"model config {model_config} is unreadable ({exc})"


def headline(rows: dict[str, int], judged: list[str], served: str | None) -> tuple[str, str]:
    """The artifact the summary reports: the served one when it was judged, else the one
    that scored most rows, and a note saying why it is not the served one."""
    if served in judged:
        return str(served), ""
    most = max(judged, key=lambda a: rows.get(a, 0))
    if served is None:
        return most, ""
    return most, (
        f"{served}, which the model config names, scored {rows.get(served, 0)} rows of the "
        f"sample (too few to judge; a rollback moments ago?): the headline is {most}"
    )


def reference_path(settings: DriftSettings, artifact: str, given: Path | None) -> Path:
    """The reference sample ``artifact``'s rows are compared with: its own, from the
    servers' models folder (``--reference`` overrides it, with --artifact)."""
    return given or settings.models_dir / artifact / "reference.parquet"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--artifact", help="only the rows this artifact scored (default: each)")
    p.add_argument("--live", type=Path, default=ROOT / ".run" / "live-sample")
    p.add_argument("--reference", type=Path, help="with --artifact; default: its reference.parquet")
    p.add_argument("--out", type=Path, default=ROOT / "reports" / "drift")
    p.add_argument("--min-rows", type=int, default=200)
    p.add_argument("--max-drifted-share", type=float, default=0.5)
    settings, args = main_settings("drift", p)
    args.settings = settings
    served, note = served_artifact(settings.model_config)
    if note:
        print(f"note: {note}")
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
    rows = {str(a): int(n) for a, n in scored_by.value_counts().items()}
    main_artifact, why = headline(rows, list(results), None if args.artifact else served)
    if why:
        print(f"note: {why}")
    summary = {
        "artifact": main_artifact,  # the served one (model config), when it could be judged
        "served": served,
        "model_config": str(settings.model_config),
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
    ref_path = reference_path(args.settings, artifact, args.reference)
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
