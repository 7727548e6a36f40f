"""The SLO spec (observability/slo.toml): load it, validate it, print it as OpenSLO v1.

Both the load gate (loadtest/gate.py) and the rule generator (observability/generate.py) read
the spec through ``load()``, which refuses a spec that is incomplete, has unknown keys or
numbers out of range, naming each problem.

python -m observability.slo --check     # validate; exit 1 naming every problem
python -m observability.slo --openslo   # the SLOs as OpenSLO v1 documents (YAML)
python -m observability.slo --sloth     # the SLOs as a Sloth prometheus/v1 spec
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

SLO_FILE = Path(__file__).with_name("slo.toml")
PERIOD_DAYS = 30  # every objective is over a rolling 30-day window
GRPC_CODES = {
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
}  # fmt: skip


def _ratio(v) -> bool:  # an objective or share: strictly between 0 and 1
    return isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < 1


def _positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0


def _duration(v) -> bool:
    return isinstance(v, str) and re.fullmatch(r"[1-9][0-9]*[smhd]", v) is not None


def _kinds() -> set[str]:  # the contract's error kinds (both servers' `type` label)
    contract = Path(__file__).resolve().parent.parent / "proto" / "contract.toml"
    return set(tomllib.loads(contract.read_text())["kinds"])


# section -> key -> (check, what it must be)
SCHEMA = {
    "predict": {
        "p95_ms": (_positive, "a positive number of milliseconds"),
        "min_rps": (_positive, "a positive rate"),
        "max_error_ratio": (_ratio, "a ratio in (0, 1)"),
    },
    "service": {
        "availability": (_ratio, "an objective in (0, 1)"),
        "max_lag_seconds": (_positive, "a positive number of seconds"),
        "lag_objective": (_ratio, "an objective in (0, 1)"),
        "min_throughput_per_s": (_positive, "a positive rate"),
    },
    "alerting": {
        "latency_objective": (_ratio, "an objective in (0, 1)"),
        "server_fault_kinds": (
            lambda v: isinstance(v, list) and bool(v) and set(v) <= _kinds(),
            "a non-empty list of error kinds from proto/contract.toml",
        ),
        "client_unanswered_codes": (
            lambda v: isinstance(v, list) and bool(v) and set(v) <= GRPC_CODES - {"OK"},
            "a non-empty list of gRPC status code names other than OK",
        ),
        "min_calls_per_s": (_positive, "a positive rate"),
        "max_dead_letter_ratio": (_ratio, "a ratio in (0, 1)"),
        "max_offset_lag": (
            lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
            "a positive integer",
        ),
        "max_backfill_share": (_ratio, "a share in (0, 1)"),
    },
    "drift": {
        "psi_threshold": (_positive, "a positive PSI"),
        "max_drifted_share": (_ratio, "a share in (0, 1)"),
        "window": (_duration, 'a Prometheus duration such as "15m"'),
        "report_max_age_hours": (_positive, "a positive number of hours"),
    },
}


class SloSpecError(ValueError):
    pass


def problems(cfg: dict) -> list[str]:
    """Every way ``cfg`` differs from the schema, one line each (empty when valid)."""
    out = [f"unknown section [{s}]" for s in cfg if s not in SCHEMA]
    for section, keys in SCHEMA.items():
        got = cfg.get(section)
        if not isinstance(got, dict):
            out.append(f"missing section [{section}]")
            continue
        out += [f"unknown key {section}.{k}" for k in got if k not in keys]
        for key, (ok, what) in keys.items():
            if key not in got:
                out.append(f"missing {section}.{key} ({what})")
            elif not ok(got[key]):
                out.append(f"{section}.{key} = {got[key]!r} must be {what}")
    return out


def load(path: Path = SLO_FILE) -> dict:
    cfg = tomllib.loads(path.read_text())
    if bad := problems(cfg):
        raise SloSpecError(f"{path}: " + "; ".join(bad))
    return cfg


def openslo(cfg: dict | None = None) -> list[dict]:
    """One OpenSLO v1 ``SLO`` per SLI, its bad/total queries the ones the rules record."""
    from observability import rules

    docs = []
    for sli in rules.slis(cfg or load()):
        name = f"volspike-{sli.name}"
        docs.append({
            "apiVersion": "openslo/v1",
            "kind": "SLO",
            "metadata": {"name": name, "displayName": sli.title},
            "spec": {
                "description": sli.what,
                "service": "volspike",
                "indicator": {
                    "metadata": {"name": f"{name}-sli"},
                    "spec": {"ratioMetric": {
                        "counter": False,
                        "bad": _source(sli.bad.replace("{w}", "5m")),
                        "total": _source(sli.total.replace("{w}", "5m")),
                    }},
                },
                "timeWindow": [{"duration": f"{PERIOD_DAYS}d", "isRolling": True}],
                "budgetingMethod": "Occurrences",
                "objectives": [{"displayName": sli.title, "target": sli.objective}],
            },
        })  # fmt: skip
    return docs


def sloth(cfg: dict | None = None) -> dict:
    """The SLOs as a Sloth ``prometheus/v1`` spec (``sloth validate`` / ``sloth generate``):
    each SLI's error ratio is the one our rules record (raw, per window), the alerts are
    Sloth's multi-window multi-burn-rate pair with our severities. What Sloth's rules lack
    and ours have: the minimum-traffic guard (docs/slo.md)."""
    from observability import rules

    slos = []
    for sli in rules.slis(cfg or load()):
        slos.append({
            "name": sli.name,
            "objective": round(sli.objective * 100, 6),
            "description": sli.what,
            "sli": {"raw": {"error_ratio_query": rules.error_ratio(sli, "{{.window}}")}},
            "alerting": {
                "name": f"Volspike{sli.name.capitalize()}BudgetBurn",
                "page_alert": {"labels": {"severity": "page"}},
                "ticket_alert": {"labels": {"severity": "ticket"}},
            },
        })  # fmt: skip
    return {"version": "prometheus/v1", "service": "volspike", "slos": slos}


def _source(query: str) -> dict:
    return {"metricSource": {"type": "Prometheus", "spec": {"query": query}}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--file", type=Path, default=SLO_FILE)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", action="store_true", help="validate the spec")
    g.add_argument("--openslo", action="store_true", help="print OpenSLO v1 YAML")
    g.add_argument("--sloth", action="store_true", help="print a Sloth prometheus/v1 spec")
    args = p.parse_args()
    try:
        cfg = load(args.file)
    except (SloSpecError, tomllib.TOMLDecodeError, OSError) as e:
        sys.exit(f"invalid SLO spec: {e}")
    if args.check:
        print(f"{args.file}: valid ({len(SCHEMA)} sections)")
        return
    import yaml

    if args.sloth:
        print(yaml.safe_dump(sloth(cfg), sort_keys=False, width=1000), end="")
        return
    print(yaml.safe_dump_all(openslo(cfg), sort_keys=False, width=1000), end="")


if __name__ == "__main__":
    main()
