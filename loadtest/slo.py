"""The Predict SLO numbers (observability/slo.toml) and the gate that compares a run with them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from observability.slo import SLO_FILE, load


@dataclass(frozen=True)
class Slo:
    p95_ms: float
    min_rps: float
    max_error_ratio: float


@dataclass(frozen=True)
class RunResult:
    requests: int
    failures: int
    rps: float
    p95_ms: float

    @property
    def error_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 1.0


def predict_slo(path: Path = SLO_FILE, **overrides: float | None) -> Slo:
    values = dict(load(path)["predict"])
    values.update({k: float(v) for k, v in overrides.items() if v is not None})
    return Slo(values["p95_ms"], values["min_rps"], values["max_error_ratio"])


def violations(result: RunResult, slo: Slo) -> list[str]:
    """One line per missed SLO: which one, the measured value, the target."""
    out = []
    if result.requests == 0:
        return ["no request completed: nothing to judge"]
    if result.p95_ms > slo.p95_ms:
        out.append(f"p95 latency {result.p95_ms:.1f} ms > target {slo.p95_ms:g} ms")
    if result.rps < slo.min_rps:
        out.append(f"throughput {result.rps:.1f} req/s < target {slo.min_rps:g} req/s")
    if result.error_ratio > slo.max_error_ratio:
        out.append(
            f"error ratio {result.error_ratio:.4%} ({result.failures}/{result.requests})"
            f" > target {slo.max_error_ratio:.4%}"
        )
    return out
