"""The runbook's steps, read mechanically from docs/runbook.md: under each alert's section
(`## <Alert>`), every line of a fenced block is a step of the block's kind (`promql`: a query,
`sh`: a command, `log`: a line the server's log holds, `...` standing for any text), and every
PromQL-looking inline code span of its **Verify recovery.** paragraph is a `verify` step.
tests/pipeline/test_runbook_walk.py runs them during induced failures; tests/test_runbook.py
checks the convention."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.conftest import ROOT

RUNBOOK = ROOT / "docs" / "runbook.md"
KINDS = ("promql", "sh", "log")
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```", re.S | re.M)
SPAN = re.compile(r"`([^`]+)`")
# a metric, a recording rule or one function of one: `up`, `rate(x_total[1m])`
PROMQL_SPAN = re.compile(r"^(?:[a-z_]+\()?[a-z_][a-z0-9_:]*(?:\{[^}]*\})?(?:\[\w+\])?\)?$")


@dataclass(frozen=True)
class Step:
    section: str
    kind: str  # promql | sh | log | verify
    index: int  # among the section's steps of this kind
    text: str

    @property
    def key(self) -> tuple[str, str, int]:
        return self.section, self.kind, self.index


def sections() -> dict[str, str]:
    """Every `## ` section of the runbook by title (alert sections are named after the alert,
    procedures after what they do); a `# ` heading ends the one before it."""
    out = {}
    for part in re.split(r"^## ", RUNBOOK.read_text(), flags=re.M)[1:]:
        title, _, body = part.partition("\n")
        out[title.strip()] = re.split(r"^# ", body, flags=re.M)[0]
    return out


def alert_sections() -> dict[str, str]:
    return {k: v for k, v in sections().items() if re.fullmatch(r"Volspike\w+", k)}


def fences(body: str) -> list[tuple[str, list[str]]]:
    """(kind, non-empty lines) of each fenced block."""
    return [
        (lang.strip(), [ln for ln in text.splitlines() if ln.strip()])
        for lang, text in FENCE.findall(body)
    ]


def steps(section: str, body: str) -> list[Step]:
    out: list[Step] = []
    count: dict[str, int] = {}

    def add(kind: str, text: str) -> None:
        out.append(Step(section, kind, count.get(kind, 0), text))
        count[kind] = count.get(kind, 0) + 1

    for kind, lines in fences(body):
        for line in lines:
            add(kind, line)
    verify = re.search(r"\*\*Verify recovery\.\*\*(.*?)(?:\n\*\*|\Z)", FENCE.sub("", body), re.S)
    if verify:
        for span in SPAN.findall(verify.group(1)):
            if PROMQL_SPAN.match(span):
                add("verify", span)
    return out


def all_steps() -> list[Step]:
    return [s for name, body in alert_sections().items() for s in steps(name, body)]


def log_pattern(line: str) -> re.Pattern:
    """A `log` step as a regular expression: the text as written, `...` for any text."""
    return re.compile(".*".join(re.escape(part) for part in line.split("...")))
