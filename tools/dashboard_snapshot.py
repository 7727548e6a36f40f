"""Render the committed Grafana dashboard JSON into a PNG from a live Prometheus, so a person
sees what Grafana would show without Grafana: layout from each panel's gridPos, every target
through query_range, legends from legendFormat placed as the panel says (below or right of
the plot, never on it), SLO threshold lines, stat panels as their last value, and the
dashboard's annotations (e.g. a model switch) as dashed lines across every time series.

    python -m tools.dashboard_snapshot --prometheus http://127.0.0.1:9090 --out docs/dashboard.png
"""

from __future__ import annotations

import argparse
import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from tools.obs_stack import get_json
from tools.procs import ROOT

DASHBOARD = ROOT / "observability" / "grafana" / "dashboards" / "volspike.json"
COLORS = {"blue": "#8ab8ff", "red": "#f2495c", "green": "#73bf69", "yellow": "#fade2a"}
SCALE = {
    "s": (1000.0, "ms"),
    "percentunit": (100.0, "%"),
    "reqps": (1.0, "req/s"),
    "ops": (1.0, "/s"),
}


MAX_SERIES = 30


def query_range(prom: str, expr: str, start: float, end: float, step: float) -> list:
    out = get_json(
        f"{prom}/api/v1/query_range", {"query": expr, "start": start, "end": end, "step": step}
    )
    return out["data"]["result"]


def instant(prom: str, expr: str, at: float) -> list:
    out = get_json(f"{prom}/api/v1/query", {"query": expr, "time": at})["data"]["result"]
    return [{"metric": s["metric"], "values": [s["value"]]} for s in out]


def legend(fmt: str, labels: dict) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt) or str(labels)


def events(prom: str, dash: dict, start: float, end: float, step: float) -> list:
    """(time, title, color) of each annotation event: each run of samples its query returns
    (Grafana's Prometheus annotations) starts one."""
    out = []
    for note in dash.get("annotations", {}).get("list", []):
        if not note.get("enable", True) or not note.get("expr"):
            continue
        for s in query_range(prom, note["expr"], start, end, step):
            times = [float(t) for t, _ in s["values"]]
            for i, t in enumerate(times):
                if i == 0 or t - times[i - 1] > 1.5 * step:
                    title = legend(note.get("titleFormat", note["name"]), s["metric"])
                    out.append((t, title, COLORS.get(note.get("iconColor", ""), "#8ab8ff")))
    return sorted(out)


def minutes_text(minutes: float) -> str:
    return f"{minutes:.0f} min" if minutes >= 10 else f"{minutes:.1f} min"


def place_legend(ax, placement: str, n: int) -> None:
    """Legend outside the plot, as Grafana draws it: the axes give up room for it."""
    box = ax.get_position()
    style = dict(fontsize=7, facecolor="#181b1f", labelcolor="#ccccdc", framealpha=0.6)
    if placement == "right":
        ax.set_position([box.x0, box.y0, box.width * 0.66, box.height])
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, **style)
        return
    cols = 3
    lines = -(-n // cols)
    cut = min(0.45, 0.075 * lines + 0.05)  # the share of the height the legend takes
    ax.set_position([box.x0, box.y0 + box.height * cut, box.width, box.height * (1 - cut)])
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.16), ncol=cols, borderaxespad=0,
              **style)  # fmt: skip


def render(prom: str, out: Path, minutes: float, dashboard: Path = DASHBOARD) -> int:
    """Draw every panel; returns how many panels had no data."""
    dash = json.loads(dashboard.read_text())
    end = time.time()
    start = end - minutes * 60
    step = max(1.0, minutes * 60 / 300)
    notes = events(prom, dash, start, end, step)
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in dash["panels"])
    fig = plt.figure(figsize=(24, rows * 0.62), dpi=80, facecolor="#111217")
    grid = fig.add_gridspec(rows, 24, hspace=2.2, wspace=1.2, top=0.96, bottom=0.02)
    empty = 0
    for panel in dash["panels"]:
        g = panel["gridPos"]
        ax = fig.add_subplot(grid[g["y"] : g["y"] + g["h"] - 1, g["x"] : g["x"] + g["w"]])
        ax.set_facecolor("#181b1f")
        ax.set_title(panel["title"], color="#ccccdc", fontsize=11, loc="left")
        ax.tick_params(colors="#8e8e8e", labelsize=8)
        for side in ax.spines.values():
            side.set_color("#2c3235")
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        factor, suffix = SCALE.get(unit, (1.0, ""))
        series = []
        for target in panel["targets"]:
            if target.get("instant"):
                found = instant(prom, target["expr"], end)
            else:
                found = query_range(prom, target["expr"], start, end, step)
            for s in found:
                pts = [(float(t), float(v)) for t, v in s["values"] if v not in ("NaN", "+Inf")]
                if pts:
                    series.append((legend(target.get("legendFormat", ""), s["metric"]), pts))
        if not series:
            empty += 1
            ax.text(0.5, 0.5, "No data", color="#8e8e8e", ha="center", va="center",
                    transform=ax.transAxes)  # fmt: skip
            continue
        if panel["type"] == "stat":
            ax.axis("off")
            text = "\n".join(f"{name}: {pts[-1][1] * factor:.4g}{suffix}" for name, pts in series)
            ax.text(0.5, 0.45, text, color="#73bf69", ha="center", va="center", fontsize=15,
                    transform=ax.transAxes)  # fmt: skip
            continue
        for name, pts in series[:MAX_SERIES]:
            ax.plot([(t - end) / 60 for t, _ in pts], [v * factor for _, v in pts], label=name,
                    linewidth=1.2)  # fmt: skip
        for step_ in panel["fieldConfig"]["defaults"].get("thresholds", {}).get("steps", []):
            if step_.get("value") is not None and step_.get("color") == "red":
                ax.axhline(step_["value"] * factor, color="#f2495c", linestyle="--", linewidth=1)
        ax.set_xlim(-minutes, 0)
        for t, title, color in notes:
            x = (t - end) / 60
            ax.axvline(x, color=color, linestyle=(0, (4, 3)), linewidth=1.1)
            ax.text(x, 1.0, f" {title}", color=color, fontsize=7, va="top", ha="left",
                    transform=ax.get_xaxis_transform())  # fmt: skip
        ax.set_xlabel("minutes ago", color="#8e8e8e", fontsize=8)
        if suffix:
            ax.set_ylabel(suffix, color="#8e8e8e", fontsize=8)
        opts = panel.get("options", {}).get("legend", {})
        if opts.get("showLegend", True):
            place_legend(ax, opts.get("placement", "bottom"), min(len(series), MAX_SERIES))
    stamp = datetime.fromtimestamp(end, UTC).strftime("%Y-%m-%d %H:%M UTC")
    shown = "; ".join(f"{title} at {(t - end) / 60:.1f} min" for t, title, _ in notes)
    fig.suptitle(f"{dash['title']}  (last {minutes_text(minutes)}, {stamp}, rendered from {prom})"
                 + (f"\nannotations: {shown}" if shown else ""),
                 color="#ccccdc", fontsize=14)  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, facecolor=fig.get_facecolor(), bbox_inches="tight")
    plt.close(fig)
    return empty


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--prometheus", default="http://127.0.0.1:9090")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    p.add_argument("--minutes", type=float, default=5.0, help="time range shown")
    args = p.parse_args()
    empty = render(args.prometheus, args.out, args.minutes)
    print(f"wrote {args.out} ({empty} panel(s) without data)")


if __name__ == "__main__":
    main()
