"""The Grafana dashboard, authored as code (grafana-foundation-sdk 0.0.21).

Every panel's queries are listed once in ``panels()``, the annotations in ``annotation_specs()``;
the live test runs each of them against a real Prometheus and ``tools/dashboard_snapshot.py``
renders them from the generated JSON. A title names the window its queries use.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from observability import slo
from telemetry import names_gen as contract

UID = "volspike-overview"
PROMETHEUS_UID = "prometheus"  # provisioned in grafana/provisioning/datasources
TEMPO_UID = "tempo"


@dataclass(frozen=True)
class PanelSpec:
    title: str
    queries: tuple[tuple[str, str], ...]  # (PromQL, legend)
    unit: str = "short"
    kind: str = "timeseries"  # or stat
    threshold: float | None = None  # a red line (the SLO)
    exemplars: bool = False
    legend: str = "bottom"  # or right: many series (Grafana, and the picture, keep it off the plot)


@dataclass(frozen=True)
class AnnotationSpec:
    """Events marked on every time series panel: each run of samples the query returns."""

    name: str
    expr: str
    title: str  # legend format of the event's title
    color: str


def annotation_specs() -> list[AnnotationSpec]:
    active = f"max by (artifact) ({contract.ACTIVE_MODEL.name}{{0}} == 1)"
    return [
        AnnotationSpec(
            # an artifact active now that was not a minute ago, while another one was: a
            # switch (make rollback, a config change), not a server's first load
            "Model switch",
            f"{active.format('')}\nunless on (artifact) {active.format(' offset 1m')}"
            f"\nand on () count({contract.ACTIVE_MODEL.name} offset 1m == 1) > 0",
            "model switch: {{artifact}} active",
            "blue",
        ),
        AnnotationSpec(
            "Model load failed",
            f"sum(increase({contract.MODEL_RELOADS.name}"
            f'{{result="{contract.RESULT_FAILED}"}}[1m])) > 0',
            "model load failed (the previous artifact keeps serving)",
            "red",
        ),
    ]


def spaced(window: str) -> str:
    """A PromQL window as titles write it: 15m -> 15 m."""
    return f"{window[:-1]} {window[-1]}"


def panels(cfg: dict | None = None) -> list[PanelSpec]:
    cfg = cfg or slo.load()
    p95 = cfg["predict"]["p95_ms"] / 1000
    lag = cfg["service"]["max_lag_seconds"]
    d = cfg["drift"]
    w = d["window"]
    hist = f"{contract.RPC_DURATION.name}_bucket"
    prob = f"rate({contract.PREDICTED_PROBABILITY.name}_bucket[5m])"
    q = [
        (f'histogram_quantile({x}, sum by (le) (rate({hist}{{method="Predict"}}[1m])))', f"p{n}")
        for x, n in ((0.5, 50), (0.95, 95), (0.99, 99))
    ]
    burn = "volspike_slo:{0}_errors:ratio_rate1h / {1}"
    period = f"{slo.PERIOD_DAYS} d"
    budgets = {
        "latency": 1 - cfg["alerting"]["latency_objective"],
        "availability": 1 - cfg["service"]["availability"],
        "errors": cfg["predict"]["max_error_ratio"],
        "freshness": 1 - cfg["service"]["lag_objective"],
    }
    return [
        PanelSpec(
            "Requests by method and code (1 m rate)",
            (
                (
                    f"sum by (method, code) (rate({contract.RPC_REQUESTS.name}[1m]))",
                    "{{method}} {{code}}",
                ),
            ),
            "reqps",
        ),
        PanelSpec("Predict latency (server, 1 m)", tuple(q), "s", threshold=p95, exemplars=True),
        PanelSpec(
            "Predict error ratio (5 m)",
            (("volspike_slo:errors_errors:ratio_rate5m", "non-OK / all"),),
            "percentunit",
            threshold=cfg["predict"]["max_error_ratio"],
        ),
        PanelSpec(
            f"Availability (3 d) and its budget left ({period})",
            (
                ("1 - volspike_slo:availability_errors:ratio_rate3d", "availability, 3 d"),
                (
                    'volspike_slo:error_budget_remaining:ratio{slo="availability"}',
                    f"budget left, {period}",
                ),
            ),
            "percentunit",
            kind="stat",
        ),
        PanelSpec(
            "Burn rates (1 h)",
            tuple((burn.format(n, f"{b:g}"), n) for n, b in budgets.items()),
            "short",
            threshold=14.4,
        ),
        PanelSpec(
            f"Error budget left ({period})",
            (("volspike_slo:error_budget_remaining:ratio", "{{slo}}"),),
            "percentunit",
            threshold=0.0,
        ),
        PanelSpec(
            "Consumer lag: p95 event -> prediction (1 m)",
            (
                (
                    "histogram_quantile(0.95, sum by (le) "
                    f"(rate({contract.CONSUMER_END_TO_END_LAG.name}_bucket[1m])))",
                    "p95 event -> prediction",
                ),
            ),
            "s",
            threshold=lag,
        ),
        PanelSpec(
            "Consumer lag (offsets)",
            (
                (
                    f"sum by (partition) ({contract.CONSUMER_OFFSET_LAG.name})",
                    "partition {{partition}}",
                ),
            ),
        ),
        PanelSpec(
            "Batch size (rows per Predict, 1 m)",
            (
                (
                    f"sum(rate({contract.CONSUMER_BATCH_ROWS.name}_sum[1m]))"
                    f" / sum(rate({contract.CONSUMER_BATCH_ROWS.name}_count[1m]))",
                    "mean rows",
                ),
            ),
        ),
        PanelSpec(
            "Throughput (1 m rate)",
            (
                (f"sum(rate({contract.CONSUMER_PREDICTIONS_PRODUCED.name}[1m]))", "predictions/s"),
                (f"sum(rate({contract.PREDICTIONS.name}[1m]))", "rows scored/s"),
                (
                    f"sum(rate({contract.CONSUMER_BACKFILL_PREDICTIONS.name}[1m]))",
                    "backfill answers/s (not in freshness)",
                ),
            ),
            "ops",
        ),
        PanelSpec(
            "Dead-lettered by reason (1 m rate)",
            (
                (
                    f"sum by (reason) (rate({contract.CONSUMER_DEAD_LETTERED.name}[1m]))",
                    "{{reason}}",
                ),
            ),
            "ops",
            legend="right",
        ),
        PanelSpec(
            "Active artifact",
            ((f"max by (artifact) ({contract.ACTIVE_MODEL.name})", "{{artifact}}"),),
            kind="stat",
        ),
        PanelSpec(
            "Model loads (per 5 m)",
            (
                (f"sum by (result) (increase({contract.MODEL_RELOADS.name}[5m]))", "{{result}}"),
                (
                    f"sum by (artifact, result) (increase({contract.MODEL_LOAD.name}_count[5m]))",
                    "{{artifact}} {{result}}",
                ),
            ),
        ),
        PanelSpec(
            "Rows in flight",
            (
                (f"sum({contract.ROWS_SCORING.name})", "rows in the trees"),
                (f"sum by (method) ({contract.RPC_IN_FLIGHT.name})", "calls {{method}}"),
            ),
            legend="right",
        ),
        PanelSpec(
            "Predicted probability (5 m)",
            tuple(
                (f"histogram_quantile({x}, sum by (le) ({prob}))", f"p{n}")
                for x, n in ((0.5, 50), (0.9, 90), (0.99, 99))
            ),
            "percentunit",
        ),
        PanelSpec(
            f"Drift: PSI per feature and of the predictions ({spaced(w)})",
            ((f"volspike_drift:psi:{w}", "{{artifact}} {{feature}}"),),
            threshold=d["psi_threshold"],
            legend="right",
        ),
        PanelSpec(
            f"Drift: share of features drifted ({spaced(w)})",
            ((f"volspike_drift:drifted_feature_share:{w}", "{{artifact}}"),),
            "percentunit",
            threshold=d["max_drifted_share"],
        ),
        PanelSpec(
            "Warming up: share of answers without a probability (5 m)",
            (
                (
                    f"sum(rate({contract.CONSUMER_WARMING_UP.name}[5m]))"
                    f" / sum(rate({contract.CONSUMER_PREDICTIONS_PRODUCED.name}[5m]))",
                    "warming up",
                ),
            ),
            "percentunit",
        ),
        PanelSpec(
            "Positive label share (5 m)",
            (
                (
                    f"sum by (artifact) (rate({contract.POSITIVE_LABELS.name}[5m]))"
                    f" / sum by (artifact) (rate({contract.PREDICTIONS.name}[5m]))",
                    "{{artifact}}",
                ),
            ),
            "percentunit",
        ),
    ]


def _target(expr: str, legend: str, ref: str, exemplar: bool, instant: bool):
    """A stat panel asks for the value now (an instant query): a range query would also
    show the last value of a series that has since gone, e.g. the artifact rolled back from."""
    q = (
        prometheus.Dataquery()
        .expr(expr)
        .legend_format(legend)
        .ref_id(ref)
        .exemplar(exemplar)
        .datasource(dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID))
    )
    return q.instant() if instant else q.range()


def _panel(spec: PanelSpec, x: int, y: int):
    builder = stat.Panel() if spec.kind == "stat" else timeseries.Panel()
    builder = (
        builder.title(spec.title)
        .unit(spec.unit)
        .grid_pos(dm.GridPos(h=8, w=8, x=x, y=y))
        .datasource(dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID))
    )
    for i, (expr, legend) in enumerate(spec.queries):
        ref = chr(ord("A") + i)
        builder = builder.with_target(
            _target(expr, legend, ref, spec.exemplars, spec.kind == "stat")
        )
    if isinstance(builder, timeseries.Panel):
        placement = (
            cm.LegendPlacement.RIGHT if spec.legend == "right" else cm.LegendPlacement.BOTTOM
        )
        builder = builder.legend(
            cb.VizLegendOptions()
            .show_legend(True)
            .display_mode(cm.LegendDisplayMode.LIST)
            .placement(placement)
        )
    if spec.threshold is not None and spec.kind == "timeseries":
        assert isinstance(builder, timeseries.Panel)  # spec.kind chose it above
        steps = [
            dm.Threshold(value=None, color="green"),
            dm.Threshold(value=spec.threshold, color="red"),
        ]
        builder = builder.thresholds(
            db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(steps)
        ).thresholds_style(cb.GraphThresholdsStyleConfig().mode(cm.GraphThresholdsStyleMode.LINE))
    return builder


def build(cfg: dict | None = None) -> dict:
    dash = (
        db.Dashboard("Volatility-spike inference")
        .uid(UID)
        .tags(["volspike"])
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("utc")
    )
    for i, spec in enumerate(panels(cfg)):
        dash = dash.with_panel(_panel(spec, (i % 3) * 8, (i // 3) * 8))
    for a in annotation_specs():
        dash = dash.annotation(
            db.AnnotationQuery()
            .name(a.name)
            .datasource(dm.DataSourceRef(type_val="prometheus", uid=PROMETHEUS_UID))
            .enable(True)
            .icon_color(a.color)
            .expr(a.expr)
            .title_format(a.title)
            .step("15s")
        )
    return json.loads(json.dumps(dash.build(), cls=JSONEncoder))
