"""The Grafana dashboard, authored as code (grafana-foundation-sdk 0.0.21).

Every panel's queries are listed once in ``PANELS``; the live test runs each of them against
a real Prometheus and ``tools/dashboard_snapshot.py`` renders them from the generated JSON.
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


def panels(cfg: dict | None = None) -> list[PanelSpec]:
    cfg = cfg or slo.load()
    p95 = cfg["predict"]["p95_ms"] / 1000
    lag = cfg["service"]["max_lag_seconds"]
    d = cfg["drift"]
    w = d["window"]
    hist = "volspike_rpc_duration_seconds_bucket"
    prob = "rate(volspike_predicted_probability_bucket[5m])"
    q = [
        (f'histogram_quantile({x}, sum by (le) (rate({hist}{{method="Predict"}}[1m])))', f"p{n}")
        for x, n in ((0.5, 50), (0.95, 95), (0.99, 99))
    ]
    burn = "volspike_slo:{0}_errors:ratio_rate1h / {1}"
    budgets = {
        "latency": 1 - cfg["alerting"]["latency_objective"],
        "availability": 1 - cfg["service"]["availability"],
        "errors": cfg["predict"]["max_error_ratio"],
        "freshness": 1 - cfg["service"]["lag_objective"],
    }
    return [
        PanelSpec(
            "Requests by method and code",
            (
                (
                    "sum by (method, code) (rate(volspike_rpc_requests_total[1m]))",
                    "{{method}} {{code}}",
                ),
            ),
            "reqps",
        ),
        PanelSpec("Predict latency (server)", tuple(q), "s", threshold=p95, exemplars=True),
        PanelSpec(
            "Predict error ratio",
            (("volspike_slo:errors_errors:ratio_rate5m", "non-OK / all, 5m"),),
            "percentunit",
            threshold=cfg["predict"]["max_error_ratio"],
        ),
        PanelSpec(
            "Availability (30 d) and budget left",
            (
                ("1 - volspike_slo:availability_errors:ratio_rate3d", "availability, 3d"),
                (
                    "1 - volspike_slo:availability_errors:ratio_rate3d"
                    f" / {budgets['availability']:g}",
                    "budget left",
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
            "Consumer lag (seconds)",
            (
                (
                    "histogram_quantile(0.95, sum by (le) "
                    "(rate(volspike_consumer_end_to_end_lag_seconds_bucket[1m])))",
                    "p95 event -> prediction",
                ),
            ),
            "s",
            threshold=lag,
        ),
        PanelSpec(
            "Consumer lag (offsets)",
            (("sum by (partition) (volspike_consumer_offset_lag)", "partition {{partition}}"),),
        ),
        PanelSpec(
            "Batch size (rows per Predict)",
            (
                (
                    "sum(rate(volspike_consumer_batch_rows_sum[1m]))"
                    " / sum(rate(volspike_consumer_batch_rows_count[1m]))",
                    "mean rows",
                ),
            ),
        ),
        PanelSpec(
            "Throughput",
            (
                ("sum(rate(volspike_consumer_predictions_produced_total[1m]))", "predictions/s"),
                ("sum(rate(volspike_predictions_total[1m]))", "rows scored/s"),
            ),
            "ops",
        ),
        PanelSpec(
            "Dead-lettered by reason",
            (("sum by (reason) (rate(volspike_consumer_dead_lettered_total[1m]))", "{{reason}}"),),
            "ops",
        ),
        PanelSpec(
            "Active artifact",
            (("max by (artifact) (volspike_active_model_info)", "{{artifact}}"),),
            kind="stat",
        ),
        PanelSpec(
            "Model loads",
            (
                ("sum by (result) (increase(volspike_model_reloads_total[5m]))", "{{result}}"),
                (
                    "sum by (artifact, result)"
                    " (increase(volspike_model_load_duration_seconds_count[5m]))",
                    "{{artifact}} {{result}}",
                ),
            ),
        ),
        PanelSpec(
            "Rows in flight",
            (
                ("sum(volspike_rows_scoring)", "rows in the trees"),
                ("sum by (method) (volspike_rpc_in_flight)", "calls {{method}}"),
            ),
        ),
        PanelSpec(
            "Predicted probability",
            tuple(
                (f"histogram_quantile({x}, sum by (le) ({prob}))", f"p{n}")
                for x, n in ((0.5, 50), (0.9, 90), (0.99, 99))
            ),
            "percentunit",
        ),
        PanelSpec(
            f"Drift: PSI per feature and of the predictions ({w})",
            ((f"volspike_drift:psi:{w}", "{{feature}}"),),
            threshold=d["psi_threshold"],
        ),
        PanelSpec(
            "Drift: share of features drifted",
            ((f"volspike_drift:drifted_feature_share:{w}", "{{artifact}}"),),
            "percentunit",
            threshold=d["max_drifted_share"],
        ),
        PanelSpec(
            "Warming up: share of answers without a probability",
            (
                (
                    "sum(rate(volspike_consumer_warming_up_total[5m]))"
                    " / sum(rate(volspike_consumer_predictions_produced_total[5m]))",
                    "warming up",
                ),
            ),
            "percentunit",
        ),
        PanelSpec(
            "Positive label share",
            (
                (
                    "sum by (artifact) (rate(volspike_positive_labels_total[5m]))"
                    " / sum by (artifact) (rate(volspike_predictions_total[5m]))",
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
    return json.loads(json.dumps(dash.build(), cls=JSONEncoder))
