"""Mutation test of the generated Prometheus rules: every single-number, single-window and
single-matcher change to observability/prometheus/rules/volspike.rules.yml must make some
promtool unit test fail; a mutation no test notices is a number no test pins.

python -m tools.mutate_rules                 # run all; exit 1 naming every surviving mutation
python -m tools.mutate_rules --list          # print the mutations only
python -m tools.mutate_rules --only Freshness --jobs 2
python -m tools.mutate_rules --stride 7      # every 7th mutation and the listed ones (make test)

Mutations (per rule expression, one at a time): each number x10 and /2 (0 -> 1); each window
([5m] and the window in a recorded SLO series' name) to the next shorter and longer window;
each `for` duration x10 and /2; each `le` bound written another way ("30.0" -> "30"); each
alternative of a regex matcher dropped; each != matcher dropped. A mutant is run against the
unit tests that read the mutated rule (directly or through recorded series), each test alone
with only the rules it needs, stopping at the first failure.
"""

from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "observability" / "prometheus" / "rules" / "volspike.rules.yml"
TESTS = sorted((ROOT / "observability" / "prometheus" / "tests").rglob("*.test.yml"))
DURATIONS = ["1m", "5m", "10m", "15m", "30m", "1h", "2h", "6h", "1d", "3d", "30d"]
SLO_WINDOWS = ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]  # observability/rules.py WINDOWS
# The mutations an outside review found surviving every rule test (issue 20), by name:
# (what, rules whose output matches, old text, new text).
LISTED = [
    ("availability fast burn 1h/5m threshold x10", r"AvailabilityBudgetBurnFast",
     "ratio_rate1h > 0.0144 and volspike_slo:availability_errors:ratio_rate5m > 0.0144",
     "ratio_rate1h > 0.144 and volspike_slo:availability_errors:ratio_rate5m > 0.144"),
    ("availability fast burn 6h/30m threshold x10", r"AvailabilityBudgetBurnFast",
     "ratio_rate6h > 0.006 and volspike_slo:availability_errors:ratio_rate30m > 0.006",
     "ratio_rate6h > 0.06 and volspike_slo:availability_errors:ratio_rate30m > 0.06"),
    ("latency factor 14.4 halved", r"LatencyBudgetBurnFast", "> 0.72", "> 0.36"),
    ("availability 5m short window dropped", r"AvailabilityBudgetBurnFast",
     " and volspike_slo:availability_errors:ratio_rate5m > 0.0144", ""),
    ("availability slow burn 1d/2h threshold x10", r"AvailabilityBudgetBurnSlow",
     "> 0.003", "> 0.03"),
    ("freshness factor 6 -> 60", r"FreshnessBudgetBurnFast", "> 0.06", "> 0.6"),
    ("UNAVAILABLE removed from the availability codes", r"availability_(errors|events)",
     "UNAVAILABLE|DEADLINE_EXCEEDED", "DEADLINE_EXCEEDED"),
    ('le="30.0" -> le="30" in freshness', r"freshness_errors", 'le="30.0"', 'le="30"'),
    ("availability 30m window -> 5m", r"availability_(errors|events):ratio_rate30m|"
     r"availability_(errors|events):rate30m", "[30m]", "[5m]"),
    ("drifted-share threshold 0.2 -> 1.0", r"drifted_feature_share", "> bool 0.2", "> bool 1"),
    ("prediction included in the feature-drift share", r"drifted_feature_share",
     '{feature!="prediction"}', ""),
]  # fmt: skip
NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
NUMBER = re.compile(r"(?<![\w.:$])(\d+(?:\.\d+)?(?:e[+-]?\d+)?)(?![\w.])")
WINDOW = re.compile(r"\[(\d+[smhd])\]|(?<=ratio_rate)(\d+[mhd])\b|(?<=:rate)(\d+[mhd])\b")


@dataclass(frozen=True)
class Mutation:
    group: int
    rule: int
    field: str  # expr or for
    value: str
    what: str

    def apply(self, doc: dict) -> dict:  # the rules with this one change
        out = copy.deepcopy(doc)
        out["groups"][self.group]["rules"][self.rule][self.field] = self.value
        return out


def _output(rule: dict) -> str:
    return rule.get("record") or rule["alert"]


def _masked(expr: str) -> str:
    """expr with quoted strings and [ranges] blanked out (same length), to find numbers."""
    return re.sub(r'"[^"]*"|\[[^\]]*\]', lambda m: " " * len(m.group()), expr)


def _neighbours(d: str) -> list[str]:
    out: list[str] = []
    for ladder in (DURATIONS, SLO_WINDOWS):
        if d in ladder:
            i = ladder.index(d)
            out += [ladder[j] for j in (i - 1, i + 1) if 0 <= j < len(ladder)]
    return list(dict.fromkeys(out))


def _and_operands(expr: str) -> list[tuple[int, int]]:
    """Spans of each ` and [on()] operand` (up to the next and/or, closing paren or line
    end at the same depth): dropping one removes that condition."""
    spans = []
    for m in re.finditer(r"\s+and\s+(on\(\)\s+)?", expr):
        depth, i = 0, m.end()
        while i < len(expr):
            c = expr[i]
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            elif c == "\n" or (depth == 0 and re.match(r"\s+(and|or|unless)\s", expr[i:])):
                break
            i += 1
        spans.append((m.start(), i))
    return spans


def _num(x: float) -> str:
    return f"{x:.6g}"


def _duration_times(d: str, k: float) -> str:
    n, unit = int(d[:-1]), d[-1]
    secs = n * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * k
    return f"{int(secs)}s"


def mutations(doc: dict) -> list[Mutation]:
    out: list[Mutation] = []
    for gi, g in enumerate(doc["groups"]):
        for ri, r in enumerate(g["rules"]):
            name, expr = _output(r), r["expr"]

            def add(new: str, what: str, field: str = "expr") -> None:
                out.append(Mutation(gi, ri, field, new, f"{name}: {what}"))  # noqa: B023

            masked = _masked(expr)
            for m in NUMBER.finditer(masked):
                x = float(m.group(1))
                for y in [x * 10, x / 2] if x else [1.0]:
                    new = expr[: m.start()] + _num(y) + expr[m.end() :]
                    add(new, f"{m.group(1)} -> {_num(y)} at {m.start()}")
            for m in WINDOW.finditer(expr):
                w, (s, e) = next((v, m.span(i + 1)) for i, v in enumerate(m.groups()) if v)
                for nw in _neighbours(w):
                    add(expr[:s] + nw + expr[e:], f"window {w} -> {nw} at {s}")
            for m in re.finditer(r'le="([^"]+)"', expr):
                v = m.group(1)
                nv = v[:-2] if v.endswith(".0") else v + "1"
                add(expr[: m.start(1)] + nv + expr[m.end(1) :], f'le="{v}" -> le="{nv}"')
            for m in re.finditer(r'(\w+)=~"([^"]+)"', expr):
                alts = m.group(2).split("|")
                for a in alts if len(alts) > 1 else []:
                    rest = "|".join(x for x in alts if x != a)
                    new = expr[: m.start(2)] + rest + expr[m.end(2) :]
                    add(new, f"{m.group(1)}=~ without {a}")
            for m in re.finditer(r',?\s*\w+!="[^"]*"\s*,?', expr):
                cut = m.group()
                keep = "," if cut.startswith(",") and cut.endswith(",") else ""
                add(expr[: m.start()] + keep + expr[m.end() :], f"drop {cut.strip(', ')}")
            for s, e in _and_operands(expr):
                add(expr[:s] + expr[e:], f"drop '{expr[s:e].strip()}'")
            d = r.get("for", "0s")
            if d not in ("0s", "0m"):
                for k in (10, 0.5):
                    add(_duration_times(d, k), f"for {d} -> x{k:g}", "for")
    for what, pattern, old, new in LISTED:
        hits = [(gi, ri) for gi, g in enumerate(doc["groups"]) for ri, r in enumerate(g["rules"])
                if re.search(pattern, _output(r)) and old in r["expr"]]  # fmt: skip
        if not hits:
            raise SystemExit(f"listed mutation {what!r} matches no rule: regenerate LISTED")
        out += [Mutation(gi, ri, "expr", doc["groups"][gi]["rules"][ri]["expr"].replace(old, new),
                         f"listed: {what} ({_output(doc['groups'][gi]['rules'][ri])})")
                for gi, ri in hits]  # fmt: skip
    return out


def _names(expr: str) -> set[str]:
    found = set(NAME.findall(re.sub(r'"[^"]*"', "", expr)))
    found |= set(re.findall(r'alertname="([^"]+)"', expr))
    return found


def closure(doc: dict, wanted: set[str]) -> dict:
    """The rules ``wanted`` needs (and what they read, transitively), groups kept in order."""
    rules = {(gi, ri): r for gi, g in enumerate(doc["groups"]) for ri, r in enumerate(g["rules"])}
    need, keep = set(wanted), set[tuple[int, int]]()
    while True:
        more = {k for k, r in rules.items() if _output(r) in need} - keep
        if not more:
            break
        keep |= more
        for k in more:
            need |= _names(rules[k]["expr"])
    groups = []
    for gi, g in enumerate(doc["groups"]):
        rs = [r for ri, r in enumerate(g["rules"]) if (gi, ri) in keep]
        if rs:
            groups.append({**{k: v for k, v in g.items() if k != "rules"}, "rules": rs})
    return {"groups": groups}


@dataclass
class UnitTest:
    file: Path
    interval: str
    test: dict
    reads: set[str]  # alerts and recorded series it checks
    needs: set[str] = field(default_factory=set)  # every rule output it depends on
    catches: int = 0


def unit_tests() -> list[UnitTest]:
    out = []
    for f in TESTS:
        doc = yaml.safe_load(f.read_text())
        for t in doc["tests"]:
            reads = {a["alertname"] for a in t.get("alert_rule_test", [])}
            for e in t.get("promql_expr_test", []):
                reads |= _names(e["expr"])
            out.append(UnitTest(f, doc.get("evaluation_interval", "1m"), t, reads))
    return out


def write_one(doc: dict, ut: UnitTest, where: Path) -> Path:
    """A test file holding ``ut`` alone, with only the rules it needs from ``doc``."""
    where.mkdir(parents=True, exist_ok=True)
    (where / "rules.yml").write_text(yaml.safe_dump(closure(doc, ut.reads), sort_keys=False))
    test = {"rule_files": ["rules.yml"], "evaluation_interval": ut.interval, "tests": [ut.test]}
    path = where / "t.test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return path


def run_many(promtool: str, files: list[Path]) -> dict[Path, bool]:
    """One promtool process for many test files: file -> passed."""
    r = subprocess.run([promtool, "test", "rules", *map(str, files)],
                       capture_output=True, text=True, timeout=1800)  # fmt: skip
    out = {}
    for chunk in r.stdout.split("Processing test file: ")[1:]:
        name, _, rest = chunk.partition("\n")
        out[Path(name.strip())] = "SUCCESS" in rest and "FAILED" not in rest
    if missing := [f for f in files if f not in out]:
        raise RuntimeError(f"promtool said nothing about {missing[:3]}: {r.stderr[-2000:]}")
    return out


def run_all(promtool: str, files: list[Path], jobs: int) -> dict[Path, bool]:
    size = max(1, -(-len(files) // (4 * jobs)))  # a few chunks per process: none idles
    chunks = [files[i : i + size] for i in range(0, len(files), size)]
    out: dict[Path, bool] = {}
    with ThreadPoolExecutor(jobs) as pool:
        for part in pool.map(lambda c: run_many(promtool, c), chunks):
            out.update(part)
    return out


def relevant(doc: dict, m: Mutation, tests: list[UnitTest]) -> list[UnitTest]:
    """The tests that depend on the mutated rule, those that check its output first."""
    target = _output(doc["groups"][m.group]["rules"][m.rule])
    return sorted((ut for ut in tests if target in ut.needs), key=lambda ut: target not in ut.reads)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--promtool", default=None)
    p.add_argument("--list", action="store_true")
    p.add_argument("--only", default="", help="only mutations whose description matches")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--stride", type=int, default=1, help="every Nth mutation (and the listed)")
    args = p.parse_args()
    doc = yaml.safe_load(RULES.read_text())
    muts = [m for i, m in enumerate(mutations(doc)) if re.search(args.only, m.what)
            and (i % args.stride == 0 or m.what.startswith("listed:"))]  # fmt: skip
    if args.list:
        print("\n".join(m.what for m in muts))
        print(f"{len(muts)} mutations")
        return
    promtool = args.promtool or subprocess.run(
        [str(ROOT / "tools" / "build_go_tools.sh"), "prometheus"],
        capture_output=True, text=True, check=True,
    ).stdout.strip() + "/promtool"  # fmt: skip
    tests = unit_tests()
    for ut in tests:
        ut.needs = {_output(r) for g in closure(doc, ut.reads)["groups"] for r in g["rules"]}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base = {write_one(doc, ut, tmp / f"base{i}"): ut for i, ut in enumerate(tests)}
        results = run_all(promtool, list(base), args.jobs)
        if broken := [base[f].test.get("name", f.name) for f, ok in results.items() if not ok]:
            sys.exit(f"unit tests fail on the unmutated rules: {broken}")
        # rounds: every undecided mutant against its next relevant test, all of them in two
        # promtool processes; a test that kills a mutant moves up the order for the next
        queue = {i: (m, relevant(doc, m, tests)) for i, m in enumerate(muts)}
        mutants = {i: m.apply(doc) for i, m in enumerate(muts)}
        tried = dict.fromkeys(queue, 0)
        survivors: list[Mutation] = []
        per_round = 1  # tests per mutant in this round: 1, 2, 4, ... (few rounds for the tail)
        while queue:
            files = {}
            for i, (m, uts) in list(queue.items()):
                if tried[i] == 1:  # after round 0: the rest, those that caught most first
                    queue[i] = (m, [uts[0], *sorted(uts[1:], key=lambda u: -u.catches)])
                order = queue[i][1]
                if tried[i] >= len(order):
                    survivors.append(m)
                    del queue[i]
                    continue
                for k in range(tried[i], min(tried[i] + per_round, len(order))):
                    files[write_one(mutants[i], order[k], tmp / f"m{i}" / str(k))] = (i, order[k])
                tried[i] += per_round
            for f, ok in (run_all(promtool, list(files), args.jobs) if files else {}).items():
                i, ut = files[f]
                if not ok:
                    ut.catches += 1
                    queue.pop(i, None)
            per_round *= 2
    print(f"{len(muts)} mutations, {len(muts) - len(survivors)} caught, "
          f"{len(survivors)} survived")  # fmt: skip
    for m in survivors:
        print(f"  survived: {m.what}")
    sys.exit(1 if survivors else 0)


if __name__ == "__main__":
    main()
