"""What each artifact rests on, in one table generated from the manifests (#23 item 6).

README.md carries it between its ``artifacts:begin`` / ``artifacts:end`` markers;
``make models`` (and ``python -m compiled_models.report``) rewrite it, and
tests/test_artifacts.py fails when it is stale. Each row: the data, the walk-forward test
folds' spike episodes and positives, the model's PR-AUC against raw ``rv_60s`` and the
logistic rival, the paired verdict against both simple rivals (how many folds the gain's
95 % interval is above zero, below it, or spans it, and the mean gain over the folds with its
interval), and the calibration served.
"""

from __future__ import annotations

from pathlib import Path

from compiled_models import linear
from compiled_models.manifest import Manifest
from compiled_models.train import SPECS
from config.model_config import active_artifact

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
BEGIN = "<!-- artifacts:begin (generated from the manifests by make models) -->"
END = "<!-- artifacts:end -->"
DATA = {
    "es": "real E-mini S&P 500 trades, 2013-09-01..03 (one instrument)",
    "synthetic": "synthetic crypto-like stream (generated: it demonstrates the pipeline)",
}
RIVALS = {"logistic": "logistic rival", "best_feature": "best single feature"}


def _folds(m: Manifest, score: str) -> str:
    return " / ".join(f"{f['scores'][score]['pr_auc'][0]:.2f}" for f in m.metrics["walk_forward"])


def is_logistic(m: Manifest) -> bool:
    """The artifact is the logistic rival itself (compiled_models/linear.py)."""
    return m.params.get("xgboost", {}).get("kind") == linear.KIND


def _verdict(m: Manifest, rival: str) -> str:
    """better / worse / no difference shown, in folds, from the paired gain's interval."""
    if rival == "logistic" and is_logistic(m):
        return "is the rival (same fit)"
    gains = [f["scores"]["model"][f"pr_auc_gain_vs_{rival}"] for f in m.metrics["walk_forward"]]
    won = sum(g[1] > 0 for g in gains)
    lost = sum(g[2] < 0 for g in gains)
    same = len(gains) - won - lost
    parts = [(won, "better"), (lost, "worse"), (same, "no difference")]
    out = ", ".join(f"{what} on {n}" for n, what in parts if n)
    over = m.metrics.get("gain_over_folds", {}).get(f"pr_auc_gain_vs_{rival}")
    if over is None:
        return out
    v, lo, hi = over
    together = "better" if lo > 0 else "worse" if hi < 0 else "no difference"
    return f"{out}; all folds together: {together}, {v:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _episodes(m: Manifest) -> str:
    rows = m.metrics["walk_forward"]
    eps = " / ".join(str(f["episodes"]["model"]["episodes"]) for f in rows)
    rates = [f["test_positive_rate"] for f in rows]
    return f"{eps} ({min(rates):.0%}-{max(rates):.0%} of ticks)"


def _calibration(m: Manifest) -> str:
    c = m.metrics["calibration"]
    return c.get("method", "isotonic") if m.calibration else "none"


def _with_intervals(m: Manifest) -> str:
    out = []
    for f in m.metrics["walk_forward"]:
        v, lo, hi = f["scores"]["model"]["pr_auc"]
        out.append(f"{v:.2f} [{lo:.2f}, {hi:.2f}]")
    return " / ".join(out)


def sentence(m: Manifest) -> str:
    """The row's facts as one sentence, with the intervals: the manifest's ``scope``, which
    ModelInfo returns (build.py writes it when the artifact is built)."""
    folds = " / ".join(str(f["test_block"]) for f in m.metrics["walk_forward"])
    return (
        f"Walk-forward test folds {folds}: spike episodes {_episodes(m)}; PR-AUC "
        f"{_with_intervals(m)} (95 % block-bootstrap), raw rv_60s {_folds(m, 'rv_60s')}, "
        f"logistic rival {_folds(m, 'logistic')}; "
        + "; ".join(f"vs {what}: {_verdict(m, r)}" for r, what in RIVALS.items())
        + " (folds counted by the paired gain's 95 % interval); "
        f"calibration: {_calibration(m)}."
    )


def row(m: Manifest, spec_data: str, default: bool) -> str:
    name = f"`{m.name}`" + (" (default)" if default else "")
    cells = [name, DATA[spec_data], _episodes(m), _folds(m, "model"), _folds(m, "rv_60s"),
             _folds(m, "logistic"), *(_verdict(m, r) for r in RIVALS), _calibration(m)]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def block(root: Path = ROOT / "compiled_models", model_config: Path | None = None) -> str:
    default = active_artifact(model_config or ROOT / "config" / "model.toml")
    specs = sorted(SPECS, key=lambda s: s.name != default)  # the default first
    out = [
        BEGIN,
        "| artifact | trained on | spike episodes, folds 2 / 3 / 4 | PR-AUC, folds 2 / 3 / 4 "
        "| raw `rv_60s` as a score | logistic rival | vs logistic rival | vs best single feature "
        "| calibration |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in specs:
        if (root / s.name / "manifest.json").exists():
            out.append(row(Manifest.read(root / s.name), s.data, s.name == default))
    return "\n".join([*out, END])


def render_readme(current: str, generated: str) -> str:
    if BEGIN not in current or END not in current:
        raise SystemExit(f"{README}: the {BEGIN} / {END} markers are missing")
    head, rest = current.split(BEGIN, 1)
    return head + generated + rest.split(END, 1)[1]


def write_readme(root: Path = ROOT / "compiled_models") -> None:
    current = README.read_text()
    text = render_readme(current, block(root))
    if text != current:
        README.write_text(text)
