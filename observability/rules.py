"""Prometheus recording and alerting rules, generated from the one SLO file.

The SLOs become multi-window, multi-burn-rate alerts (Google SRE workbook, ch. 5): page when
the 1 h and 5 m burn rates both exceed 14.4 (2 % of a 30-day budget in an hour) or the 6 h and
30 m both exceed 6; ticket when 1 d and 2 h exceed 3 or 3 d and 6 h exceed 1. Each pair is
guarded by a minimum event rate over its long window, so an idle service neither pages nor
burns its budget on a handful of calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from observability import slo

RUNBOOK = "docs/runbook.md"
PAGE = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
TICKET = (("1d", "2h", 3.0), ("3d", "6h", 1.0))
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")


def le(x: float) -> str:
    """A bucket bound as Prometheus 3 stores it (``1`` becomes ``1.0``): a rule selecting
    ``le="1"`` would silently never match."""
    return repr(float(x))


DOWN_WHILE_WAITING = "volspike_slo:server_down_while_waiting"
# 1 while no server target is up and the consumer reports ticks waiting: nobody is there to
# count failed calls, so the availability SLI counts that time as bad (its error ratio over a
# window is at least the share of the window spent so).
DOWN_WHILE_WAITING_EXPR = (
    '(max(up{job="volspike-server"}) == bool 0) * on() (sum(volspike_consumer_offset_lag) > bool 0)'
)


@dataclass(frozen=True)
class Sli:
    name: str  # e.g. latency
    title: str  # e.g. Predict latency
    objective: float
    bad: str  # PromQL rate of bad events over [{w}]
    total: str  # PromQL rate of the events the bad ones are a share of, over [{w}]
    events: str  # PromQL rate of all events over [{w}] (the minimum-traffic guard)
    what: str  # one line for the alert description
    sources: tuple[tuple[str, str], ...] = ()  # (series the SLI reads, when it must exist)
    unguarded: str = ""  # PromQL: while true, burning needs no minimum traffic

    @property
    def budget(self) -> float:
        return 1.0 - self.objective

    @property
    def errors(self) -> str:  # PromQL ratio of bad events over [{w}]
        return f"({self.bad}) / ({self.total})"


def slis(cfg: dict | None = None) -> list[Sli]:
    cfg = cfg or slo.load()
    p, s, a = cfg["predict"], cfg["service"], cfg["alerting"]
    predict = 'method="Predict"'
    calls = f"sum(rate(volspike_rpc_requests_total{{{predict}}}[{{w}}]))"
    faults = "|".join(a["server_fault_kinds"])
    unanswered = "|".join(a["client_unanswered_codes"])
    client_bad = (
        f'(sum(rate(volspike_consumer_predict_calls_total{{code=~"{unanswered}"}}[{{w}}]))'
        " or vector(0))"
    )
    lag = "volspike_consumer_end_to_end_lag_seconds"
    answered = f"sum(rate({lag}_count[{{w}}]))"
    # An SLI whose source series is gone reads as healthy (0 errors): each source must exist
    # whenever its context does (the consumer gets answers; the consumer is scraped).
    answers_seen = 'sum(rate(volspike_consumer_predict_calls_total{code="OK"}[10m])) > 0'
    consumer_up = 'max(up{job="volspike-consumer"}) == 1'
    server_calls = (f"volspike_rpc_requests_total{{{predict}}}", answers_seen)
    client_calls = ("volspike_consumer_predict_calls_total", consumer_up)
    lat = "volspike_rpc_duration_seconds"
    ok = f'{predict},code="OK"'
    fast = f'{ok},le="{le(p["p95_ms"] / 1000)}"'
    ok_calls = f"sum(rate({lat}_count{{{ok}}}[{{w}}]))"
    all_calls = f"({calls} or vector(0)) + {client_bad}"
    # A healthy service has no failed-call series at all: "or vector(0)" makes its error
    # ratio 0 instead of empty (empty panels, and burn rates that read as "no data").
    return [
        Sli(
            "latency",
            "Predict latency",
            a["latency_objective"],
            f"{ok_calls} - sum(rate({lat}_bucket{{{fast}}}[{{w}}]))",
            ok_calls,
            calls,
            f"more than {a['latency_objective']:.0%} of Predict calls must finish within "
            f"{p['p95_ms']:g} ms",
            ((f"{lat}_bucket{{{fast}}}", answers_seen),),
        ),
        Sli(
            "availability",
            "Predict availability",
            s["availability"],
            f'(sum(rate(volspike_rpc_errors_total{{{predict},type=~"{faults}"}}[{{w}}]))'
            f" or vector(0)) + {client_bad}",
            all_calls,
            all_calls,
            f"{s['availability']:.1%} of Predict calls must not fail through the server's fault "
            "or go unanswered",
            (server_calls, client_calls),
        ),
        Sli(
            "errors",
            "Predict error ratio",
            1.0 - p["max_error_ratio"],
            f'sum(rate(volspike_rpc_requests_total{{{predict},code!="OK"}}[{{w}}])) or vector(0)',
            calls,
            calls,
            f"at most {p['max_error_ratio']:.1%} of Predict calls may fail (any non-OK code)",
            (server_calls,),
        ),
        Sli(
            "freshness",
            "Prediction freshness",
            s["lag_objective"],
            f'{answered} - sum(rate({lag}_bucket{{le="{le(s["max_lag_seconds"])}"}}[{{w}}]))',
            answered,
            answered,
            f"{s['lag_objective']:.0%} of predictions must be produced within "
            f"{s['max_lag_seconds']:g} s of their tick's event time",
            ((f'{lag}_bucket{{le="{le(s["max_lag_seconds"])}"}}', consumer_up),),
        ),
    ]


def error_ratio(sli: Sli, w: str) -> str:
    """PromQL of the SLI's error ratio over window ``w`` (what the rules record)."""
    ratio = sli.errors.replace("{w}", w)
    if sli.name == "availability":  # the worse of the call-based and the time-based view
        down = f"(avg_over_time({DOWN_WHILE_WAITING}[{w}]) or vector(0))"
        # max() skips a NaN (no calls at all): each term written once
        ratio = (f'max(label_replace({ratio}, "term", "calls", "", "")\nor\n'
                 f'label_replace({down}, "term", "down", "", ""))')  # fmt: skip
    return ratio


def _record(sli: Sli) -> list[dict]:
    out = []
    for w in WINDOWS:
        ratio = error_ratio(sli, w)
        out.append({"record": f"volspike_slo:{sli.name}_errors:ratio_rate{w}", "expr": ratio})
        out.append({"record": f"volspike_slo:{sli.name}_events:rate{w}",
                    "expr": sli.events.replace("{w}", w)})  # fmt: skip
    return out


def _budget(sli: Sli) -> list[dict]:
    """SLO metadata and the 30-day error budget left (as Sloth and Pyrra record them): the
    period's error ratio is the mean of the 5 m ratios (moments without events skipped: a
    0/0 ratio is not recorded in the labelled series)."""
    lbl = {"slo": sli.name}
    period = f"{slo.PERIOD_DAYS}d"
    five = f"volspike_slo:{sli.name}_errors:ratio_rate5m"
    return [
        {"record": "volspike_slo_info", "expr": "vector(1)",
         "labels": {**lbl, "title": sli.title, "objective": f"{sli.objective:g}",
                    "period": period}},
        {"record": "volspike_slo:objective:ratio", "expr": f"vector({sli.objective:g})",
         "labels": lbl},
        {"record": "volspike_slo:errors:ratio_rate5m", "expr": f"{five} >= 0", "labels": lbl},
        {"record": f"volspike_slo:errors:ratio_rate{period}",
         "expr": f'avg_over_time(volspike_slo:errors:ratio_rate5m{{slo="{sli.name}"}}[{period}])',
         "labels": lbl},
        {"record": "volspike_slo:error_budget_remaining:ratio",
         "expr": f'1 - volspike_slo:errors:ratio_rate{period}{{slo="{sli.name}"}}'
                 f" / {sli.budget:.6g}",
         "labels": lbl},
    ]  # fmt: skip


def _absent(sli: Sli) -> list[dict]:
    if not sli.sources:
        return []
    expr = "\nor\n".join(f"(absent({s}) and on() ({c}))" for s, c in sli.sources)
    named = "; ".join(f"`{s}` while `{c}`" for s, c in sli.sources)
    return [
        alert(
            "VolspikeSliSourceAbsent",
            expr,
            "ticket",
            f"{sli.title}: a series its SLI reads is missing",
            f"A source of the {sli.name} SLI is absent ({named}): the SLI reads no errors "
            "from it, so its burn-rate alerts cannot fire (renamed metric, lost scrape, "
            "changed label).",
            "10m",
            {"slo": sli.name},
        )
    ]


def _burn(sli: Sli, pairs, min_rate: float) -> str:
    terms = []
    for long, short, factor in pairs:
        limit = f"{factor * sli.budget:.6g}"
        terms.append(
            f"(volspike_slo:{sli.name}_errors:ratio_rate{long} > {limit}"
            f" and volspike_slo:{sli.name}_errors:ratio_rate{short} > {limit}"
            f" and on() {_guard(sli, long, min_rate)})"
        )
    return "\n  or\n".join(terms)


def _guard(sli: Sli, window: str, min_rate: float) -> str:
    guard = f"volspike_slo:{sli.name}_events:rate{window} > {min_rate:g}"
    if sli.unguarded:  # e.g. every server down while ticks wait: no call counts anything
        return f"({guard} or on() {sli.unguarded})"
    return guard


def alert(
    name: str,
    expr: str,
    severity: str,
    summary: str,
    description: str,
    for_: str = "0s",
    labels: dict | None = None,
) -> dict:
    return {
        "alert": name,
        "expr": expr,
        "for": for_,
        "labels": {"severity": severity, **(labels or {})},
        "annotations": {
            "summary": summary,
            "description": description,
            "runbook_url": f"{RUNBOOK}#{name.lower()}",
        },
    }


def slo_groups(cfg: dict | None = None) -> list[dict]:
    cfg = cfg or slo.load()
    min_rate = cfg["alerting"]["min_calls_per_s"]
    groups = []
    for sli in slis(cfg):
        title = sli.name.capitalize()
        rules = _record(sli)
        rules.append(
            alert(
                f"Volspike{title}BudgetBurnFast",
                _burn(sli, PAGE, min_rate),
                "page",
                f"{sli.title}: error budget burning fast",
                f"{sli.what} (objective {sli.objective:.4g}); at this rate the 30-day budget "
                "is gone within 5 days. Error ratio now {{ $value | humanizePercentage }}.",
            )
        )
        rules.append(
            alert(
                f"Volspike{title}BudgetBurnSlow",
                _burn(sli, TICKET, min_rate),
                "ticket",
                f"{sli.title}: error budget burning",
                f"{sli.what} (objective {sli.objective:.4g}); the budget is being spent "
                "faster than it accrues. Error ratio now {{ $value | humanizePercentage }}.",
            )
        )
        rules += _budget(sli) + _absent(sli)
        if sli.name == "availability":
            rules.insert(0, {"record": DOWN_WHILE_WAITING, "expr": DOWN_WHILE_WAITING_EXPR})
        groups.append({"name": f"volspike-slo-{sli.name}", "rules": rules})
    return groups


def ops_group(cfg: dict | None = None) -> dict:
    cfg = cfg or slo.load()
    s, a = cfg["service"], cfg["alerting"]
    answered = (
        "(sum(rate(volspike_consumer_predictions_produced_total[5m]))"
        " + (sum(rate(volspike_consumer_dead_lettered_total[5m])) or vector(0)))"
    )
    backlog = "sum(volspike_consumer_offset_lag) > 0"
    rules = [
        alert(
            "VolspikeModelLoadFailed",
            'increase(volspike_model_reloads_total{result="failed"}[10m]) > 0',
            "ticket",
            "A model load or switch failed; the previous model keeps serving",
            "{{ $labels.instance }} refused an artifact or an unreadable model config in the "
            "last 10 minutes (see the server log for why).",
        ),
        alert(
            "VolspikeServerNotServing",
            "volspike_serving == 0",
            "page",
            "A server reports NOT_SERVING",
            "{{ $labels.instance }} has no model loaded or is draining.",
            "1m",
        ),
        alert(
            "VolspikeTargetDown",
            'up{job=~"volspike-.*"} == 0',
            "page",
            "Prometheus cannot scrape {{ $labels.job }}",
            "{{ $labels.instance }} ({{ $labels.job }}) is down or unreachable.",
            "1m",
        ),
        alert(
            "VolspikeServerMetricsAbsent",
            'absent(volspike_serving{job="volspike-server"})',
            "page",
            "No server metrics at all",
            "No volspike-server target has reported volspike_serving for 5 minutes.",
            "5m",
        ),
        alert(
            "VolspikeConsumerMetricsAbsent",
            'absent(volspike_consumer_messages_consumed_total{job="volspike-consumer"})',
            "page",
            "No consumer metrics at all",
            "No volspike-consumer target has reported for 5 minutes.",
            "5m",
        ),
        alert(
            "VolspikeDeadLetterRatioHigh",
            "sum(rate(volspike_consumer_dead_lettered_total[5m]))"
            " / sum(rate(volspike_consumer_messages_consumed_total[5m]))"
            f" > {a['max_dead_letter_ratio']:g}",
            "ticket",
            "Many ticks are dead-lettered",
            f"More than {a['max_dead_letter_ratio']:.0%} of consumed messages went to the "
            "dead-letter topic over 5 minutes: {{ $value | humanizePercentage }}.",
            "5m",
        ),
        alert(
            "VolspikeConsumerStalled",
            f"{answered} == 0 and on() {backlog}",
            "page",
            "The consumer has a backlog and answers nothing",
            "Offsets lag behind the topic but no prediction or dead letter was produced "
            "for 5 minutes.",
            "1m",  # the 5 m rate is already the wait: a page ~6 min after the stall, not 10
        ),
        alert(
            "VolspikeThroughputBelowFloor",
            f"{answered} < {s['min_throughput_per_s']:g} and on() {backlog}",
            "ticket",
            "Consumer throughput below its floor while there is a backlog",
            f"Fewer than {s['min_throughput_per_s']:g} answers/s for 10 minutes although "
            "ticks are waiting.",
            "10m",
        ),
        alert(
            "VolspikeBackfillShareHigh",
            "sum(rate(volspike_consumer_backfill_predictions_total[30m]))"
            " / sum(rate(volspike_consumer_predictions_produced_total[30m]))"
            f" > {a['max_backfill_share']:g}",
            "ticket",
            "Most answers are to backfill ticks: the freshness SLI sees too little",
            f"More than {a['max_backfill_share']:.0%} of the consumer's answers over 30 minutes "
            "were to ticks marked backfill (kept out of the freshness SLI): "
            "{{ $value | humanizePercentage }}. A producer marking live ticks, or a long replay.",
            "30m",
        ),
        alert(
            "VolspikeConsumerOffsetLagHigh",
            f"sum(volspike_consumer_offset_lag) > {a['max_offset_lag']}",
            "ticket",
            "The consumer is far behind the ticks topic",
            f"More than {a['max_offset_lag']} messages behind for 10 minutes: {{{{ $value }}}}.",
            "10m",
        ),
    ]
    return {"name": "volspike-ops", "rules": rules}


def drift_group(cfg: dict | None = None) -> dict:
    """Each feature's PSI (and the prediction's) over the live window against the active
    artifact's reference bins, from the consumer's per-bin counters (consumer/drift.py)."""
    cfg = cfg or slo.load()
    d = cfg["drift"]
    w, eps = d["window"], 1e-4
    counts = f"sum by (artifact, feature, bin) (increase(volspike_consumer_feature_bin_total[{w}]))"
    share = f"volspike_drift:bin_share:ratio_{w}"
    live = f"clamp_min({share}, {eps:g})"
    ref = f"clamp_min(max by (artifact, feature, bin) (volspike_drift_reference_share), {eps:g})"
    psi = f"volspike_drift:psi:{w}"
    features = f'{psi}{{feature!="prediction"}}'
    rules = [
        {
            "record": share,
            "expr": f"{counts}\n  / on (artifact, feature) group_left\n"
            f"sum by (artifact, feature) (increase(volspike_consumer_feature_bin_total[{w}]))",
        },
        {
            "record": psi,
            "expr": f"sum by (artifact, feature) (\n"
            f"  ({live} - on (artifact, feature, bin) {ref})\n"
            f"  * ln({live} / on (artifact, feature, bin) {ref})\n)",
        },
        {
            "record": f"volspike_drift:drifted_feature_share:{w}",
            "expr": f"avg by (artifact) ({features} > bool {d['psi_threshold']:g})",
        },
        alert(
            "VolspikeFeatureDrift",
            f"volspike_drift:drifted_feature_share:{w} > {d['max_drifted_share']:g}",
            "ticket",
            "The live features have drifted from the model's reference",
            "{{ $value | humanizePercentage }} of {{ $labels.artifact }}'s features have a "
            f"PSI above {d['psi_threshold']:g} over the last {w}: the model scores data unlike "
            "what it was trained on.",
            "30m",
        ),
        alert(
            "VolspikePredictionDrift",
            f'{psi}{{feature="prediction"}} > {d["psi_threshold"]:g}',
            "ticket",
            "The predicted probabilities have drifted from the reference predictions",
            f"PSI of {{{{ $labels.artifact }}}}'s predictions over the last {w}: "
            "{{ $value | humanize }}.",
            "30m",
        ),
        alert(
            "VolspikeDriftReportStale",
            "time() - max(volspike_drift_report_timestamp_seconds)"
            f" > {d['report_max_age_hours'] * 3600:g}",
            "ticket",
            "The scheduled drift report has not run",
            f"The last `make drift` report is older than {d['report_max_age_hours']} hours.",
        ),
        alert(
            "VolspikeDriftReportStale",
            "absent(volspike_drift_report_timestamp_seconds)",
            "ticket",
            "The scheduled drift report has not run",
            f"No `make drift` report has reached Prometheus for {d['report_max_age_hours']} "
            "hours (none since Prometheus started, or the report's metric is not scraped).",
            f"{d['report_max_age_hours']}h",
            {"reason": "never_reported"},
        ),
    ]
    return {"name": "volspike-drift", "rules": rules}


def all_groups(cfg: dict | None = None) -> dict:
    return {"groups": [*slo_groups(cfg), ops_group(cfg), drift_group(cfg)]}
