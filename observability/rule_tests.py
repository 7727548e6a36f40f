"""Promtool unit tests generated from the SLO spec, one scenario per number they pin.

For every SLI and every burn-rate pair (long window L, short window S, factor f) of its page
and ticket alerts, with T = f x (1 - objective):

- above / below:  a steady error ratio of 1.05 T / 0.95 T over L fires / does not fire (the
  factor, the objective and every bucket bound the SLI reads are pinned within 5 %);
- recovered:      errors that stopped one step more than S ago do not fire (S is no longer);
- recent:         errors that stopped one step more than the next shorter window ago still
  fire (S is no shorter);
- early:          errors concentrated early in L, under heavy traffic, still fire (L is no
  shorter);
- each scenario's older history is ten times the traffic without errors, so a window longer
  than L sees a ratio below T (L is no longer);
- guard low / guard high: all-bad traffic at 0.8 / 1.25 times the minimum rate, arriving in
  the last part of L / only within L, is silent / fires (the minimum and its window).

Availability has one scenario per server fault kind and client code (each alone pages) and
per other contract kind (alone it does not); the time every server is down while the consumer
has a backlog pages without any call; the budget series, metadata and absent-source alerts
have their own. ``python -m observability.generate`` writes them to
observability/prometheus/tests/generated/; tools/mutate_rules.py proves they pin every number.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from observability import rules, slo

ROOT = Path(__file__).resolve().parent.parent
MINUTES = {"5m": 5, "30m": 30, "1h": 60, "2h": 120, "6h": 360, "1d": 1440, "3d": 4320}
OLD_TRAFFIC = 100.0  # older history: this many times the scenario's rate, no errors
HEAVY = 10.0  # the early heavy traffic of an "early" scenario
RATE = 1.0  # events/s in a scenario unless it tests the minimum-traffic guard


@dataclass(frozen=True)
class Seg:
    minutes: int
    rate: float  # events per second
    bad: float = 0.0  # share of them that are bad


@dataclass
class Scenario:
    name: str
    sli: str
    alert: str  # the alert it checks
    segs: list[Seg]
    fires: bool
    labels: dict = field(default_factory=dict)  # the alert's labels besides its name
    variant: tuple = ()  # how bad events are expressed (availability: a kind or a code)
    extra: list[dict] = field(default_factory=list)  # more input series

    @property
    def minutes(self) -> int:
        return sum(s.minutes for s in self.segs)


def _fmt(x: float) -> str:
    return repr(round(x, 6))


def values(segs: list[Seg], step: int, per_step) -> list[tuple[int, float, int]]:
    """(first sample index, increment, samples) per segment of a counter whose increment per
    ``step`` minutes is ``per_step(good, bad)``; increments in 1/1024ths: promtool adds them
    up exactly, so a segment's first value is never a hair below the last (which rate()
    would take for a counter reset)."""
    out, i = [], 1
    for s in segs:
        n = s.minutes // step
        events = s.rate * 60 * step
        inc = round(per_step(events * (1 - s.bad), events * s.bad) * 1024) / 1024
        out.append((i, inc, n))
        i += n
    return out


def counter(segs: list[Seg], step: int, per_step) -> str:
    """promtool's expanding notation for that counter, starting at 0."""
    out, v = ["0"], 0.0
    for _, inc, n in values(segs, step, per_step):
        if n:
            out.append(f"{_fmt(v + inc)}+{_fmt(inc)}x{n - 1}")
            v += inc * n
    return " ".join(out)


def samples(segs: list[Seg], step: int, per_step) -> list[float]:
    out = [0.0]
    for _, inc, n in values(segs, step, per_step):
        out += [out[-1] + inc * (k + 1) for k in range(n)]
    return out


def prom_rate(vals: list[float], step_s: float, window_s: float) -> float | None:
    """Prometheus's rate() at the last sample over a left-open window (extrapolatedRate)."""
    n = int(window_s // step_s)  # samples in (end - window, end]
    got = vals[-n:] if n <= len(vals) else vals
    if len(got) < 2:
        return None
    first, last = got[0], got[-1]
    delta = last - first
    sampled = (len(got) - 1) * step_s
    avg = sampled / (len(got) - 1)
    to_start = window_s - sampled  # the window ends at the last sample
    if delta > 0 and first >= 0:
        to_start = min(to_start, sampled * first / delta)
    interval = sampled + (to_start if to_start < avg * 1.1 else avg / 2)
    return delta * interval / sampled / window_s


def _buckets_around(edges, edge: float) -> tuple[float, float]:
    i = list(edges).index(edge)
    return edges[i - 1], edges[i + 1]


def series(sc: Scenario, cfg: dict, step: int) -> list[dict]:
    """The input series an SLI reads, with ``sc``'s good and bad events written into them."""
    from consumer.metrics import LAG_BUCKETS
    from server.contract_gen import RPC_DURATION

    def s(name: str, f) -> dict:
        return {"series": name, "values": counter(sc.segs, step, f), "bad_only": not f(1, 0)}

    predict = 'method="Predict",artifact="a"'
    out: list[dict]
    if sc.sli == "latency":
        fast = cfg["predict"]["p95_ms"] / 1000
        lo, hi = _buckets_around(RPC_DURATION.buckets, fast)
        h = "volspike_rpc_duration_seconds"
        ok = f'{predict},code="OK"'
        out = [
            s(f"volspike_rpc_requests_total{{{ok}}}", lambda g, b: g + b),
            s(f"{h}_count{{{ok}}}", lambda g, b: g + b),
            s(f'{h}_bucket{{{ok},le="{rules.le(lo)}"}}', lambda g, b: g / 2),
            s(f'{h}_bucket{{{ok},le="{rules.le(fast)}"}}', lambda g, b: g),
            s(f'{h}_bucket{{{ok},le="{rules.le(hi)}"}}', lambda g, b: g + b / 2),
            s(f'{h}_bucket{{{ok},le="+Inf"}}', lambda g, b: g + b),
        ]
    elif sc.sli == "availability":
        how, what = sc.variant[:2] if len(sc.variant) == 2 else ("kind", "Internal")
        out = [s(f'volspike_rpc_requests_total{{{predict},code="OK"}}', lambda g, b: g)]
        if how == "spread":  # half the bad calls fail in the server, spread over every
            # fault kind, half go unanswered, spread over every client code
            kinds, codes = cfg["alerting"]["server_fault_kinds"], what
            k, c = 2 * len(kinds), 2 * len(codes)
            out += [s(f'volspike_rpc_requests_total{{{predict},code="INTERNAL"}}',
                      lambda g, b: b / 2)]  # fmt: skip
            out += [s(f'volspike_rpc_errors_total{{{predict},code="INTERNAL",type="{kind}"}}',
                      lambda g, b: b / k) for kind in kinds]  # fmt: skip
            out += [s('volspike_consumer_predict_calls_total{code="OK"}', lambda g, b: g + b / 2)]
            out += [s(f'volspike_consumer_predict_calls_total{{code="{code}"}}',
                      lambda g, b: b / c) for code in codes]  # fmt: skip
        elif how == "kind":
            out += [
                s(f'volspike_rpc_requests_total{{{predict},code="INTERNAL"}}', lambda g, b: b),
                s(
                    f'volspike_rpc_errors_total{{{predict},code="INTERNAL",type="{what}"}}',
                    lambda g, b: b,
                ),
            ]
        else:
            out += [
                s('volspike_consumer_predict_calls_total{code="OK"}', lambda g, b: g),
                s(f'volspike_consumer_predict_calls_total{{code="{what}"}}', lambda g, b: b),
            ]
    elif sc.sli == "errors":
        out = [
            s(f'volspike_rpc_requests_total{{{predict},code="OK"}}', lambda g, b: g),
            s(f'volspike_rpc_requests_total{{{predict},code="INVALID_ARGUMENT"}}', lambda g, b: b),
        ]
    else:  # freshness
        edge = float(cfg["service"]["max_lag_seconds"])
        lo, hi = _buckets_around(LAG_BUCKETS, edge)
        h = "volspike_consumer_end_to_end_lag_seconds"
        out = [
            s(f"{h}_count", lambda g, b: g + b),
            s(f'{h}_bucket{{le="{rules.le(lo)}"}}', lambda g, b: g / 2),
            s(f'{h}_bucket{{le="{rules.le(edge)}"}}', lambda g, b: g),
            s(f'{h}_bucket{{le="{rules.le(hi)}"}}', lambda g, b: g + b / 2),
            s(f'{h}_bucket{{le="+Inf"}}', lambda g, b: g + b),
        ]
    healthy = sc.variant == ("healthy",)  # no series that only bad events create
    out = [{k: v for k, v in x.items() if k != "bad_only"} for x in out
           if not (healthy and x["bad_only"])]  # fmt: skip
    return out + sc.extra


def _prev(w: str) -> str | None:
    keys = list(MINUTES)
    i = keys.index(w)
    return keys[i - 1] if i else None


def _next(w: str) -> str | None:
    keys = list(MINUTES)
    i = keys.index(w)
    return keys[i + 1] if i + 1 < len(keys) else None


def burn_scenarios(sli: rules.Sli, alert: str, pairs, step: int, min_rate: float) -> list:
    """The scenarios of one burn-rate alert (see the module docstring)."""
    out = []
    reach = max(MINUTES[_next(lw) or lw] for lw, _, _ in pairs)  # the longest window tested
    limits = [f * sli.budget for _, _, f in pairs]

    def sc(tag: str, segs: list[Seg], fires: bool) -> Scenario:
        return Scenario(f"{alert}-{tag}", sli.name, alert, segs, fires)

    for (long, short, _), t in zip(pairs, limits, strict=True):
        lm, sm = MINUTES[long], MINUTES[short]
        old = Seg(max(reach - lm, step), RATE * OLD_TRAFFIC)
        hi = min(1.0, 4 * t)  # a ratio well above T that a valid ratio can reach
        out += [
            sc(f"{long}-above", [old, Seg(lm, RATE, min(1.0, 1.05 * t))], True),
            sc(f"{long}-below", [old, Seg(lm, RATE, 0.95 * t)], False),
        ]
        # one window just below T and the other above it: silent (each threshold pinned
        # alone; the two clauses have their own copy of it)
        y = (0.95 * lm - 1.5 * sm) / (lm - sm) * t
        out.append(
            sc(
                f"{long}-below-long",
                [old, Seg(lm - sm, RATE, y), Seg(sm, RATE, min(1.0, 1.5 * t))],
                False,
            )
        )
        y = (1.2 * lm - 0.95 * sm) / (lm - sm) * t
        assert y <= 1.0, (alert, long)
        out.append(
            sc(f"{short}-below-short", [old, Seg(lm - sm, RATE, y), Seg(sm, RATE, 0.95 * t)], False)
        )
        q = sm + step  # errors stopped one step more than S ago: silent
        assert hi * (lm - q) / lm > t, (alert, long)
        out.append(sc(f"{short}-recovered", [old, Seg(lm - q, RATE, hi), Seg(q, RATE)], False))
        if shorter := _prev(short):  # ... one step more than the next shorter window: fires
            q = MINUTES[shorter] + step
            assert hi * (sm - q) / sm > t, (alert, short)
            out.append(sc(f"{short}-recent", [old, Seg(lm - q, RATE, hi), Seg(q, RATE)], True))
        p = _prev(long)
        if p and MINUTES[p] > sm:  # heavy bad traffic early in L, quiet, then S above T
            pm = MINUTES[p]
            segs = [old, Seg(lm - pm, RATE * HEAVY, min(1.0, 2 * t)), Seg(pm - sm, RATE),
                    Seg(sm, RATE, min(1.0, 1.5 * t))]  # fmt: skip
            out.append(sc(f"{long}-early", segs, True))
        # the guard, at a ratio above this pair's limit and below any other pair's: bad
        # traffic under the minimum rate on average over L (above it in L's last part) is
        # silent; just above the minimum, only within L, fires
        x = min(1.0, 2 * t)
        assert all(x < u for u in limits if u > t), (alert, long)
        pm = MINUTES[p] if p else lm // 2
        low = min_rate * 0.8 * lm / pm
        out += [
            sc(f"{long}-guard-low", [Seg(reach - pm, 0.0), Seg(pm, low, x)], False),
            sc(f"{long}-guard-high", [Seg(reach - lm, 0.0), Seg(lm, min_rate * 1.25, x)], True),
        ]
    for s in out:
        s.labels = {"severity": "page" if alert.endswith("Fast") else "ticket"}
    return out


def _kinds() -> list[str]:
    return list(tomllib.loads((ROOT / "proto" / "contract.toml").read_text())["kinds"])


def availability_scenarios(sli: rules.Sli, cfg: dict, min_rate: float) -> list[Scenario]:
    """Each server fault kind and each client code alone pages; every other kind does not."""
    a = cfg["alerting"]
    alert = "VolspikeAvailabilityBudgetBurnFast"
    t = rules.PAGE[0][2] * sli.budget
    segs = [Seg(MINUTES["1h"], RATE, min(1.0, 2 * t))]
    out = []
    for kind in _kinds():
        fault = kind in a["server_fault_kinds"]
        out.append(Scenario(f"{alert}-kind-{kind}", "availability", alert, segs, fault,
                            {"severity": "page"}, ("kind", kind)))  # fmt: skip
    for code in ["OK", *a["client_unanswered_codes"], "INVALID_ARGUMENT", "CANCELLED"]:
        bad = code in a["client_unanswered_codes"]
        out.append(Scenario(f"{alert}-client-{code}", "availability", alert, segs, bad,
                            {"severity": "page"}, ("client", code)))  # fmt: skip
    return out


def down_profile_test(sli: rules.Sli) -> dict:
    """Every window of the availability ratio is at least the share of that window during
    which every server was down while ticks waited: down from 2 d to 1 d ago, from 2 h to
    1 h ago and for the last 10 minutes (no calls at all, so the share is the ratio)."""
    every, total = 5, MINUTES["3d"] + 60
    down = {m for m in range(total + 1)
            if 1440 <= total - m < 2880 or 60 <= total - m < 120 or total - m < 10}  # fmt: skip
    up = " ".join("0" if m in down else "1" for m in range(total + 1))
    evals = list(range(0, total + 1, every))
    checks = []
    for w in rules.WINDOWS:
        seen = [t for t in evals if total - MINUTES[w] < t <= total]
        want = sum(t in down for t in seen) / len(seen)
        name = f"volspike_slo:availability_errors:ratio_rate{w}"
        checks.append({"expr": f"abs({name} - {want!r}) < bool 1e-9", "eval_time": f"{total}m",
                       "exp_samples": [{"labels": "{}", "value": 1}]})  # fmt: skip
    return {"name": "down-profile", "interval": "1m", "input_series": [
        {"series": 'up{job="volspike-server",instance="s1"}', "values": up},
        # one tick waiting is a backlog (pins the "> 0")
        {"series": 'volspike_consumer_offset_lag{partition="0"}', "values": f"1x{total}"},
    ], "promql_expr_test": checks}  # fmt: skip


def down_minutes_test() -> dict:
    """The short windows of the down term, evaluated every minute: every server down for the
    last 3 minutes of 30 (ticks waiting): the 5 m ratio is 3/5, the 30 m one 3/30."""
    total, down = 30, 3
    up = " ".join("0" if total - m < down else "1" for m in range(total + 1))
    checks = []
    for w in ("5m", "30m"):
        want = down / MINUTES[w]
        name = f"volspike_slo:availability_errors:ratio_rate{w}"
        checks.append({"expr": f"abs({name} - {want!r}) < bool 1e-9", "eval_time": f"{total}m",
                       "exp_samples": [{"labels": "{}", "value": 1}]})  # fmt: skip
    return {"name": "down-minutes", "interval": "1m", "input_series": [
        {"series": 'up{job="volspike-server",instance="s1"}', "values": up},
        {"series": 'volspike_consumer_offset_lag{partition="0"}', "values": f"1x{total}"},
    ], "promql_expr_test": checks}  # fmt: skip


def _alerts_test(sc: Scenario, cfg: dict, step: int) -> dict:
    labels = ",".join(f'{k}="{v}"' for k, v in {"alertname": sc.alert, "alertstate": "firing",
                                                **sc.labels}.items())  # fmt: skip
    return {
        "name": sc.name,
        "interval": f"{step}m",
        "input_series": series(sc, cfg, step),
        "promql_expr_test": [{
            "expr": f'ALERTS{{alertname="{sc.alert}",alertstate="firing"}}',
            "eval_time": f"{sc.minutes}m",
            "exp_samples": [{"labels": f"ALERTS{{{labels}}}", "value": 1}] if sc.fires else [],
        }],
    }  # fmt: skip


def _round_up(segs: list[Seg], every: int) -> list[Seg]:
    """Pad the scenario's start (older history) so it ends on an evaluation."""
    total = sum(s.minutes for s in segs)
    pad = -total % every
    if not pad:
        return segs
    first = segs[0]
    return [Seg(first.minutes + pad, first.rate, first.bad), *segs[1:]]


def budget_tests(sli: rules.Sli, cfg: dict) -> dict:
    """Metadata, and the budget left after a day at 0.4 of the budget's ratio then three days
    at none (the mean over the 30-day period is a tenth of the budget: 0.9 remains)."""
    step = 2
    segs = [Seg(MINUTES["1d"], RATE, sli.budget * 0.4), Seg(MINUTES["3d"], RATE)]
    sc = Scenario(f"budget-{sli.name}", sli.name, "", segs, False)
    end = f"{sc.minutes}m"
    lbl = f'slo="{sli.name}"'
    return {
        "name": sc.name,
        "interval": f"{step}m",
        "input_series": series(sc, cfg, step),
        "promql_expr_test": [
            {"expr": f"volspike_slo:objective:ratio{{{lbl}}}", "eval_time": end,
             "exp_samples": [{"labels": f"volspike_slo:objective:ratio{{{lbl}}}",
                              "value": sli.objective}]},
            {"expr": f"volspike_slo_info{{{lbl}}}", "eval_time": end,
             "exp_samples": [{"labels": f'volspike_slo_info{{{lbl},title="{sli.title}",'
                              f'objective="{sli.objective:g}",period="{slo.PERIOD_DAYS}d"}}',
                              "value": 1}]},
            {"expr": f"round(volspike_slo:error_budget_remaining:ratio{{{lbl}}}, 0.01)",
             "eval_time": end, "exp_samples": [{"labels": f"{{{lbl}}}", "value": 0.9}]},
        ],
    }  # fmt: skip


def suites(cfg: dict | None = None) -> dict[str, dict]:
    """File name -> promtool test document (rule_files relative to the tests folder)."""
    cfg = cfg or slo.load()
    min_rate = cfg["alerting"]["min_calls_per_s"]
    files: dict[str, dict] = {}
    for name, pairs, step, every, suffix in (
        ("page", rules.PAGE, 1, 60, "Fast"),
        ("ticket", rules.TICKET, 10, 360, "Slow"),
    ):
        tests = []
        for sli in rules.slis(cfg):
            alert = f"Volspike{sli.name.capitalize()}BudgetBurn{suffix}"
            scs = burn_scenarios(sli, alert, pairs, step, min_rate)
            if sli.name == "availability" and suffix == "Fast":
                scs += availability_scenarios(sli, cfg, min_rate)
                files["slo-down.test.yml"] = _doc([down_profile_test(sli)], 5)
                files["slo-down-1m.test.yml"] = _doc([down_minutes_test()], 1)
            if suffix == "Fast":  # only good calls, no failed-call series at all: silent
                lm = MINUTES[pairs[0][0]]
                scs.append(Scenario(f"{alert}-healthy", sli.name, alert, [Seg(lm, RATE)],
                                    False, variant=("healthy",)))  # fmt: skip
            for s in scs:
                s.segs = _round_up(s.segs, every) if not s.extra else s.segs
                tests.append(_alerts_test(s, cfg, step))
        files[f"slo-{name}.test.yml"] = _doc(tests, every)
    files["slo-budget.test.yml"] = _doc([budget_tests(s, cfg) for s in rules.slis(cfg)], 60)
    prof = [f(s, cfg) for s in rules.slis(cfg) for f in (profile_test, healthy_profile_test)]
    files["slo-profile.test.yml"] = _doc(
        [*prof, unanswered_profile_test(cfg)], sum(s.minutes for s in PROFILE)
    )
    files["drift-psi.test.yml"] = _doc(drift_tests(cfg), 1)
    files["slo-absent.test.yml"] = _doc(absent_tests(cfg), 1)
    files["drift-report.test.yml"] = _doc(report_tests(cfg), 60)
    files["slo-budget-5m.test.yml"] = _doc(budget_feed_tests(cfg), 1)
    cases = ops_cases(cfg)
    files["ops.test.yml"] = _doc([ops_test(c) for c in cases if c.every_s == 60], 1)
    doc = _doc([ops_test(c) for c in cases if c.every_s == 30], 1)
    files["ops-30s.test.yml"] = {**doc, "evaluation_interval": "30s"}
    return files


# Traffic whose rate and bad share change at every window's edge (oldest first): each
# recorded window sees its own mix, so a window changed in any one term moves the value.
PROFILE = [Seg(60, 0.5, 0.3), Seg(2880, 1, 0.01), Seg(1080, 2, 0.2), Seg(240, 4, 0.05),
           Seg(60, 8, 0.4), Seg(30, 16, 0.02), Seg(25, 32, 0.15), Seg(5, 64, 0.6)]  # fmt: skip


def profile_test(sli: rules.Sli, cfg: dict) -> dict:
    """Every recorded ratio and event rate of ``sli`` equals what Prometheus's rate() gives
    for the PROFILE traffic (computed here from the samples, within 0.1 %)."""
    step = 1
    codes = tuple(cfg["alerting"]["client_unanswered_codes"])
    spread = ("spread", codes) if sli.name == "availability" else ()
    sc = Scenario(f"profile-{sli.name}", sli.name, "", PROFILE, False, variant=spread)
    bad = samples(PROFILE, step, lambda g, b: b)
    total = samples(PROFILE, step, lambda g, b: g + b)
    checks = []
    for w in rules.WINDOWS:
        ws = MINUTES[w] * 60
        rb, rt = prom_rate(bad, 60 * step, ws), prom_rate(total, 60 * step, ws)
        assert rb is not None and rt, w
        for name, want in ((f"volspike_slo:{sli.name}_errors:ratio_rate{w}", rb / rt),
                           (f"volspike_slo:{sli.name}_events:rate{w}", rt)):  # fmt: skip
            checks.append({
                "expr": f"abs({name} - {want!r}) < bool {want * 1e-3!r}",
                "eval_time": f"{sc.minutes}m",
                "exp_samples": [{"labels": "{}", "value": 1}],
            })  # fmt: skip
    return {"name": sc.name, "interval": f"{step}m", "input_series": series(sc, cfg, step),
            "promql_expr_test": checks}  # fmt: skip


def unanswered_profile_test(cfg: dict) -> dict:
    """No server ever answered (none counted a call); the consumer's attempts all ended
    UNAVAILABLE, 0.5 a second: every window's availability error ratio is exactly 1 and its
    event rate 0.5 (no fallback for the absent server series leaks in)."""
    code = cfg["alerting"]["client_unanswered_codes"][0]
    total = sum(s.minutes for s in PROFILE)
    checks = [{"expr": f"abs(volspike_slo:availability_{what} - {want}) < bool 1e-9",
               "eval_time": f"{total}m", "exp_samples": [{"labels": "{}", "value": 1}]}
              for w in rules.WINDOWS
              for what, want in ((f"errors:ratio_rate{w}", 1),
                                 (f"events:rate{w}", 0.5))]  # fmt: skip
    return {"name": "unanswered-availability", "interval": "1m", "input_series": [
        {"series": f'volspike_consumer_predict_calls_total{{code="{code}"}}',
         "values": f"0+30x{total}"}], "promql_expr_test": checks}  # fmt: skip


def drift_tests(cfg: dict) -> list[dict]:
    """PSI, the drifted-feature share and the prediction alert on two-bin features whose
    live split against a 50/50 reference gives PSIs on both sides of the threshold and of
    half and twice it: f1 0 (50/50), f2 0.27 (75/25), f3 0.17 (70/30), f4 4.6 (100/0, an
    empty bin clamped to 1e-4), f5 4.6 (50/50 against a 100/0 reference: the reference's
    empty bin clamped); the prediction 0.17. Share: 3 of 5 features (the prediction is not
    a feature)."""
    d = cfg["drift"]
    eps, minutes = 1e-4, 50
    split = {"f1": 0.5, "f2": 0.75, "f3": 0.7, "f4": 1.0, "f5": 0.5, "prediction": 0.7}
    reference = {"f5": 1.0}  # bin 0's reference share; 0.5 unless named

    def psi(p: float, f: str = "") -> float:
        out, r = 0.0, reference.get(f, 0.5)
        for live, ref in ((p, r), (1 - p, 1 - r)):
            live, ref = max(live, eps), max(ref, eps)
            out += (live - ref) * math.log(live / ref)
        return out

    series = []
    for f, p in split.items():
        for b, share in (("0", p), ("1", 1 - p)):
            lbl = f'artifact="a",feature="{f}",bin="{b}"'
            series.append({"series": f"volspike_consumer_feature_bin_total{{{lbl}}}",
                           "values": f"0+{100 * share:g}x{minutes}"})  # fmt: skip
            ref = reference.get(f, 0.5) if b == "0" else 1 - reference.get(f, 0.5)
            series.append({"series": f"volspike_drift_reference_share{{{lbl}}}",
                           "values": f"{ref:g}x{minutes}"})  # fmt: skip
    w = d["window"]
    drifted = [f for f, p in split.items()
               if f != "prediction" and psi(p, f) > d["psi_threshold"]]  # fmt: skip
    share = len(drifted) / (len(split) - 1)
    at = f"{minutes}m"
    checks = [
        {"expr": f'abs(volspike_drift:psi:{w}{{feature="{f}"}} - {psi(p, f)!r}) < bool 1e-6',
         "eval_time": at, "exp_samples": [{"labels": f'{{artifact="a",feature="{f}"}}',
                                            "value": 1}]}
        for f, p in split.items()
    ] + [
        {"expr": f"abs(volspike_drift:drifted_feature_share:{w} - {share!r}) < bool 1e-9",
         "eval_time": at, "exp_samples": [{"labels": '{artifact="a"}', "value": 1}]},
        {"expr": 'ALERTS{alertname="VolspikePredictionDrift",alertstate="firing"}',
         "eval_time": at, "exp_samples": []},
    ]  # fmt: skip
    assert 0 < psi(split["prediction"]) < d["psi_threshold"] < psi(split["f2"]) < 2 * 0.2
    # the prediction drifted (75/25, PSI 0.27): pending until 30 m, firing after
    first = 'bin="0"'

    def hot_values(x: dict) -> str:
        return f"0+{75 if first in x['series'] else 25}x{minutes}"

    hot = [x if 'feature="prediction"' not in x["series"] or "reference" in x["series"]
           else {**x, "values": hot_values(x)} for x in series]  # fmt: skip
    lbl = 'alertname="VolspikePredictionDrift",alertstate="firing"'
    fired = [{"labels": f'ALERTS{{{lbl},artifact="a",feature="prediction",severity="ticket"}}',
              "value": 1}]  # fmt: skip
    pred = [{"expr": f"ALERTS{{{lbl}}}", "eval_time": "25m", "exp_samples": []},
            {"expr": f"ALERTS{{{lbl}}}", "eval_time": "45m", "exp_samples": fired}]  # fmt: skip
    return [{"name": "drift-psi-and-share", "interval": "1m", "input_series": series,
             "promql_expr_test": checks},
            {"name": "drift-prediction", "interval": "1m", "input_series": hot,
             "promql_expr_test": pred}]  # fmt: skip


def healthy_profile_test(sli: rules.Sli, cfg: dict) -> dict:
    """The same traffic without a single failure and without the series only failures
    create: every recorded error ratio is exactly 0 (not empty, not a fallback's 1)."""
    calm = [Seg(s.minutes, s.rate) for s in PROFILE]
    sc = Scenario(f"healthy-{sli.name}", sli.name, "", calm, False, variant=("healthy",))
    total = samples(calm, 1, lambda g, b: g + b)
    checks = [{"expr": f"abs(volspike_slo:{sli.name}_errors:ratio_rate{w}) < bool 1e-12",
               "eval_time": f"{sc.minutes}m", "exp_samples": [{"labels": "{}", "value": 1}]}
              for w in rules.WINDOWS]  # fmt: skip
    # and every event rate is the calls' own (no fallback for the absent failure series)
    for w in rules.WINDOWS:
        want = prom_rate(total, 60.0, MINUTES[w] * 60.0)
        assert want
        checks.append({"expr": f"abs(volspike_slo:{sli.name}_events:rate{w} - {want!r}) < bool "
                       f"{want * 1e-3!r}", "eval_time": f"{sc.minutes}m",
                       "exp_samples": [{"labels": "{}", "value": 1}]})  # fmt: skip
    return {"name": sc.name, "interval": "1m", "input_series": series(sc, cfg, 1),
            "promql_expr_test": checks}  # fmt: skip


def absent_tests(cfg: dict) -> list[dict]:
    """VolspikeSliSourceAbsent: each source missing while its context holds fires after
    10 m (pending at 8 m); with every source present it is silent; when the context ends
    it resolves."""
    ctx = {
        "answers_seen": ('volspike_consumer_predict_calls_total{code="OK"}', "0+60x{n}"),
        "consumer_up": ('up{job="volspike-consumer",instance="c"}', "1x{n}"),
    }
    out = []
    for sli in rules.slis(cfg):
        if not sli.sources:
            continue
        present = [{"series": src, "values": "0+1x60"} for src, _ in sli.sources]
        contexts = [ctx[_context_kind(c)] for _, c in sli.sources]
        base = [{"series": s, "values": v.format(n=60)} for s, v in contexts]

        def check(at: int, fires: bool, src: str = "", sli: rules.Sli = sli) -> dict:
            lbl = f'alertname="VolspikeSliSourceAbsent",alertstate="firing",slo="{sli.name}"'
            # absent() returns the source selector's = matchers as labels
            kept = [m for m in src.partition("{")[2].rstrip("}").split(",") if "=" in m
                    and not any(op in m for op in ("!=", "=~", "!~"))]  # fmt: skip
            every = ",".join(sorted([*lbl.split(","), 'severity="ticket"', *kept]))
            exp = [{"labels": f"ALERTS{{{every}}}", "value": 1}]
            return {"expr": f"ALERTS{{{lbl}}}", "eval_time": f"{at}m",
                    "exp_samples": exp if fires else []}  # fmt: skip

        out.append({"name": f"absent-{sli.name}-present", "interval": "1m",
                    "input_series": _dedupe(present + base),
                    "promql_expr_test": [check(15, False)]})  # fmt: skip
        for i, (src, c) in enumerate(sli.sources):
            others = [x for x in present if x["series"] != src]
            kind = _context_kind(c)
            name = ctx[kind][0]
            out.append({"name": f"absent-{sli.name}-{i}", "interval": "1m",
                        "input_series": _dedupe(_without(others + base, src)),
                        "promql_expr_test": [check(8, False), check(15, True, src)]})  # fmt: skip
            ended = "0+60x20" if kind == "answers_seen" else "1x20 0x40"
            # answers last counted at 20 m: the context's 10 m rate still sees them at 28 m,
            # not at 31 m (its window pinned); the consumer down at 21 m ends it at once
            ends = {"answers_seen": [check(28, True, src), check(31, False)],
                    "consumer_up": [check(20, True, src), check(21, False)]}  # fmt: skip
            gone = [x for x in _without(others + base, src) if x["series"] != name]
            out.append({"name": f"absent-{sli.name}-{i}-context-ends", "interval": "1m",
                        "input_series": _dedupe([*gone, {"series": name, "values": ended}]),
                        "promql_expr_test": [check(15, True, src), *ends[kind],
                                             check(40, False)]})  # fmt: skip
    return out


def _context_kind(context: str) -> str:
    return "consumer_up" if "up{" in context else "answers_seen"


def _without(xs: list[dict], selector: str) -> list[dict]:
    """Input series minus any that ``selector`` (name and = matchers) would select."""
    name, _, rest = selector.partition("{")
    want = set(rest.rstrip("}").split(",")) if rest else set()
    out = []
    for x in xs:
        n, _, r = x["series"].partition("{")
        have = set(r.rstrip("}").split(",")) if r else set()
        if not (n == name and want <= have):
            out.append(x)
    return out


def _dedupe(xs: list[dict]) -> list[dict]:
    seen, out = set(), []
    for x in xs:
        if x["series"] not in seen:
            seen.add(x["series"])
            out.append(x)
    return out


def report_tests(cfg: dict) -> list[dict]:
    """VolspikeDriftReportStale when no report ever arrived: pending until the report's
    maximum age has passed, then firing; a fresh report keeps it silent."""
    hours = cfg["drift"]["report_max_age_hours"]
    lbl = 'alertname="VolspikeDriftReportStale",alertstate="firing"'
    fired = [{"labels": f'ALERTS{{{lbl},reason="never_reported",severity="ticket"}}',
              "value": 1}]  # fmt: skip
    up = {"series": 'up{job="volspike-consumer",instance="c"}', "values": f"1x{hours + 4}"}
    ts = {"series": "volspike_drift_report_timestamp_seconds",
          "values": f"0+3600x{hours + 4}"}  # fmt: skip
    return [
        {"name": "drift-report-never", "interval": "1h", "input_series": [up],
         "promql_expr_test": [
             {"expr": f"ALERTS{{{lbl}}}", "eval_time": f"{hours - 1}h", "exp_samples": []},
             {"expr": f"ALERTS{{{lbl}}}", "eval_time": f"{hours + 1}h", "exp_samples": fired},
         ]},
        {"name": "drift-report-fresh", "interval": "1h", "input_series": [up, ts],
         "promql_expr_test": [
             {"expr": f"ALERTS{{{lbl}}}", "eval_time": f"{hours + 1}h", "exp_samples": []},
         ]},
    ]  # fmt: skip


def _doc(tests: list[dict], every: int) -> dict:
    return {
        "rule_files": ["../../rules/volspike.rules.yml"],
        "evaluation_interval": f"{every}m",
        "tests": tests,
    }


def budget_feed_tests(cfg: dict) -> list[dict]:
    """The budget's per-SLO 5 m series is the 5 m ratio, not a longer one: 20 minutes at
    half the budget's ratio, then 10 healthy; at 30 m the 5 m ratio is 0 (a 30 m one is not),
    at 20 m it is the bad share."""
    out = []
    for sli in rules.slis(cfg):
        bad = sli.budget / 2
        sc = Scenario(f"budget-5m-{sli.name}", sli.name, "", [Seg(20, RATE, bad), Seg(10, RATE)],
                      False)  # fmt: skip
        sel = f'volspike_slo:errors:ratio_rate5m{{slo="{sli.name}"}}'
        upto = [Seg(20, RATE, bad)]  # what the counters hold at 20 m (increments rounded)
        rb = prom_rate(samples(upto, 1, lambda g, b: b), 60.0, 300.0)
        rt = prom_rate(samples(upto, 1, lambda g, b: g + b), 60.0, 300.0)
        assert rb and rt
        bad = rb / rt
        ok = [{"labels": f'{{slo="{sli.name}"}}', "value": 1}]
        out.append({"name": sc.name, "interval": "1m", "input_series": series(sc, cfg, 1),
                    "promql_expr_test": [
                        {"expr": f"abs({sel} - {bad!r}) < bool {bad * 1e-3!r}",
                         "eval_time": "20m", "exp_samples": ok},
                        {"expr": f"{sel} == bool 0", "eval_time": "30m", "exp_samples": ok},
                    ]})  # fmt: skip
    return out


# The operational alerts (ops_group): each scenario's input series, sample per minute, and
# its condition written again in Python (rate() as Prometheus computes it); the expected
# alert state comes from replaying `for` over the evaluations, and every change of state is
# checked on both sides (the evaluation before it and the one at it).
Samples = list[float]  # one sample a minute from 0


@dataclass
class OpsCase:
    name: str
    alert: str
    minutes: int
    inputs: dict[str, Samples]
    cond: Callable[..., bool]  # (rate, last, t) -> the alert's condition at t minutes
    for_min: float
    every_s: int = 60


def _values(xs: Samples) -> str:
    return " ".join(_fmt(x) for x in xs)


def _firing(case: OpsCase, states: list[bool]) -> list[bool]:
    out, since = [], None
    for k, on in enumerate(states):
        t = k * case.every_s / 60
        since = (since if since is not None else t) if on else None
        out.append(since is not None and t - since >= case.for_min)
    return out


def ops_cases(cfg: dict) -> list[OpsCase]:
    s, a = cfg["service"], cfg["alerting"]
    floor, lag_max = s["min_throughput_per_s"], a["max_offset_lag"]
    dlq_max = a["max_dead_letter_ratio"]
    produced = "volspike_consumer_predictions_produced_total"
    dlq = 'volspike_consumer_dead_lettered_total{reason="r"}'
    consumed = "volspike_consumer_messages_consumed_total"
    lag = 'volspike_consumer_offset_lag{partition="0"}'
    n = 45

    def ramp(per_s: float, until: int = n, then: float = 0.0, m: int = n) -> Samples:
        out, v = [], 0.0
        for i in range(m + 1):
            out.append(v)
            v += (per_s if i < until else then) * 60
        return out

    def const(x: float, m: int = n) -> Samples:
        return [x] * (m + 1)

    def answered(rate, t):
        p = rate(produced, t, 5)
        d = rate(dlq, t, 5)
        return None if p is None else p + (d or 0.0)

    def stalled(rate, last, t):
        x = answered(rate, t)
        return x is not None and x == 0 and (last(lag, t) or 0) > 0

    def below(rate, last, t):
        x = answered(rate, t)
        return x is not None and x < floor and (last(lag, t) or 0) > 0

    def dlq_high(rate, last, t):
        d, c = rate(dlq, t, 5), rate(consumed, t, 5)
        return d is not None and bool(c) and d / c > dlq_max

    def load_failed(rate, last, t):
        x = rate('volspike_model_reloads_total{result="failed"}', t, 10)
        return x is not None and x * 600 > 0

    cases = [
        # a first failure (the series exported at 0 before it) fires at once, for 10 minutes
        OpsCase("load-failed", "VolspikeModelLoadFailed", 30,
                {'volspike_model_reloads_total{result="failed"}': [0.0] * 5 + [1.0] * 26},
                load_failed, 0),
        OpsCase("stalled-answers-stop", "VolspikeConsumerStalled", n,
                {produced: ramp(20, until=20), lag: const(1)}, stalled, 1),
        OpsCase("stalled-dead-letters-stop", "VolspikeConsumerStalled", n,
                {produced: const(0), dlq: ramp(20, until=20), lag: const(1)}, stalled, 1),
        OpsCase("stalled-no-backlog", "VolspikeConsumerStalled", n,
                {produced: const(0), lag: const(0)}, stalled, 1),
        OpsCase("floor-answers-drop", "VolspikeThroughputBelowFloor", n,
                {produced: ramp(3 * floor, until=15, then=floor / 4), lag: const(1)}, below, 10),
        OpsCase("floor-dead-letters-drop", "VolspikeThroughputBelowFloor", n,
                {produced: const(0), dlq: ramp(3 * floor, until=15, then=floor / 4),
                 lag: const(1)}, below, 10),
        OpsCase("floor-just-below", "VolspikeThroughputBelowFloor", 20,
                {produced: ramp(0.95 * floor, m=20), lag: const(1, 20)}, below, 10),
        OpsCase("floor-just-above", "VolspikeThroughputBelowFloor", 20,
                {produced: ramp(1.05 * floor, m=20), lag: const(1, 20)}, below, 10),
        OpsCase("floor-no-backlog", "VolspikeThroughputBelowFloor", 20,
                {produced: ramp(floor / 4, m=20), lag: const(0, 20)}, below, 10),
        OpsCase("lag-just-above", "VolspikeConsumerOffsetLagHigh", 20,
                {lag: const(lag_max * 1.05, 20)},
                lambda r, last, t: (last(lag, t) or 0) > lag_max, 10),
        OpsCase("lag-just-below", "VolspikeConsumerOffsetLagHigh", 20,
                {lag: const(lag_max * 0.95, 20)},
                lambda r, last, t: (last(lag, t) or 0) > lag_max, 10),
        OpsCase("dlq-just-above", "VolspikeDeadLetterRatioHigh", 20,
                {consumed: ramp(100, m=20), dlq: ramp(100 * dlq_max * 1.05, m=20)}, dlq_high, 5),
        OpsCase("dlq-just-below", "VolspikeDeadLetterRatioHigh", 20,
                {consumed: ramp(100, m=20), dlq: ramp(100 * dlq_max * 0.95, m=20)}, dlq_high, 5),
        OpsCase("dlq-dead-letters-stop", "VolspikeDeadLetterRatioHigh", n,
                {consumed: ramp(100), dlq: ramp(100 * dlq_max * 3, until=20)}, dlq_high, 5),
        OpsCase("dlq-traffic-grows", "VolspikeDeadLetterRatioHigh", n,
                {consumed: ramp(100, until=20, then=1000), dlq: ramp(100 * dlq_max * 3)},
                dlq_high, 5),
    ]  # fmt: skip
    backfill = "volspike_consumer_backfill_predictions_total"
    share_max = a["max_backfill_share"]

    def backfill_high(rate, last, t):
        b, p = rate(backfill, t, 30), rate(produced, t, 30)
        if b is None or p is None:
            return False
        return b > 0 if p == 0 else b / p > share_max  # PromQL: x/0 is +Inf, 0/0 NaN

    m = 100
    cases += [
        OpsCase(f"backfill-share-{tag}", "VolspikeBackfillShareHigh", m,
                {produced: ramp(100, until=m, m=m),
                 backfill: ramp(100 * share_max * k, until=u, m=m)},
                backfill_high, 30)
        for tag, k, u in (("just-above", 1.05, m), ("just-below", 0.95, m),
                          ("stops", 1.6, 60))
    ]  # fmt: skip
    cases.append(
        OpsCase("backfill-share-traffic-grows", "VolspikeBackfillShareHigh", m,
                {produced: ramp(100, until=60, then=300, m=m),
                 backfill: ramp(100 * share_max * 1.6, until=m, m=m)}, backfill_high, 30)
    )  # fmt: skip
    # `for` of one minute against half a minute, and absent series: evaluated every 30 s
    serving, up = 'volspike_serving{job="volspike-server"}', 'up{job="volspike-server"}'
    step = [1.0] * 10 + [0.0] * 11
    cases += [
        OpsCase("not-serving", "VolspikeServerNotServing", 20, {serving: step},
                lambda r, last, t: last(serving, t) == 0, 1, 30),
        OpsCase("target-down", "VolspikeTargetDown", 20, {up: step},
                lambda r, last, t: last(up, t) == 0, 1, 30),
        OpsCase("stalled-backlog-appears", "VolspikeConsumerStalled", 20,
                {produced: const(0, 20), lag: [0.0] * 10 + [1.0] * 11}, stalled, 1, 30),
        OpsCase("server-metrics-absent", "VolspikeServerMetricsAbsent", 10,
                {consumed: const(0, 10)}, lambda r, last, t: True, 5, 30),
        OpsCase("consumer-metrics-absent", "VolspikeConsumerMetricsAbsent", 10,
                {serving: const(1, 10)}, lambda r, last, t: True, 5, 30),
    ]  # fmt: skip
    return cases


def ops_test(case: OpsCase) -> dict:
    def rate(name: str, t: float, window_min: int) -> float | None:
        xs = case.inputs.get(name)
        if xs is None or t != int(t):
            # evaluations between samples only read gauges and flat counters here
            assert xs is None or len(set(xs[: int(t) + 1])) <= 1, name
            return None if xs is None or int(t) < 1 else 0.0
        return prom_rate(xs[: int(t) + 1], 60.0, window_min * 60.0)

    def last(name: str, t: float) -> float | None:
        xs = case.inputs.get(name)
        return None if xs is None else xs[min(int(t), len(xs) - 1)]

    evals = [k * case.every_s / 60 for k in range(int(case.minutes * 60 / case.every_s) + 1)]
    fire = _firing(case, [bool(case.cond(rate, last, t)) for t in evals])
    at = {len(evals) - 1, len(evals) // 2}
    for k in range(1, len(evals)):
        if fire[k] != fire[k - 1]:
            at |= {k - 1, k}
    expr = f'count(ALERTS{{alertname="{case.alert}",alertstate="firing"}})'
    checks = [{"expr": expr, "eval_time": f"{int(evals[k] * 60)}s",
               "exp_samples": [{"labels": "{}", "value": 1}] if fire[k] else []}
              for k in sorted(at)]  # fmt: skip
    return {"name": f"ops-{case.name}", "interval": "1m",
            "input_series": [{"series": k, "values": _values(v)} for k, v in case.inputs.items()],
            "promql_expr_test": checks}  # fmt: skip
