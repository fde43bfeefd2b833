"""An experiment arm's figures from its ended workflows, each with its 95% interval.

- rates (failure, fallback, compliance): the Wilson score interval, which stays inside [0, 1] and is sound
  for small counts and rates near 0 or 1 (where the normal one is not);
- cost per workflow: the mean with the normal interval of the mean (the sample standard deviation / √n);
- latency p50 / p95: the sample quantile (nearest rank) with the distribution-free interval from order
  statistics — the ranks n·p ± z·√(n·p·(1-p)) — which assumes nothing of the latencies' distribution.

A workflow fell back when one of its billed calls went to another provider than its arm's; it met the
content gate when a draft was rewritten for it (two calls of one generation) or it failed with
compliance_violation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal

from contracts.enums import ErrorType
from contracts.experiments import Arm, ArmResult, Estimate
from services.cost_tracker.constants import FORECAST_LEVEL, FORECAST_QUANTUM, FORECAST_Z
from services.cost_tracker.model import ArmSample

RATE_QUANTUM = Decimal("0.0001")
LATENCY_QUANTUM = Decimal("0.1")
NOTHING = Estimate(value=None, lower=None, upper=None)
LEVEL = FORECAST_LEVEL
_Z = float(FORECAST_Z)


def arm_result(arm: Arm, samples: Sequence[ArmSample]) -> ArmResult:
    n = len(samples)
    failed = sum(s.status == "failed" for s in samples)
    fell_back = sum(any(p is not arm.provider for p in s.providers) for s in samples)
    gated = [s.rewrites + (s.error_type == ErrorType.COMPLIANCE_VIOLATION.value) for s in samples]
    latencies = sorted(s.duration_ms for s in samples)
    return ArmResult(
        arm=arm.name,
        workflows=n,
        completed=sum(s.status == "completed" for s in samples),
        failed=failed,
        failure_rate=wilson(failed, n),
        fallback_rate=wilson(fell_back, n),
        compliance_violations=sum(gated),
        compliance_rate=wilson(sum(g > 0 for g in gated), n),
        total_cost=sum((s.cost_usd for s in samples), Decimal(0)),
        cost_per_workflow=mean_interval([s.cost_usd for s in samples]),
        latency_p50_ms=quantile_interval(latencies, 0.5),
        latency_p95_ms=quantile_interval(latencies, 0.95),
    )


def wilson(k: int, n: int) -> Estimate:
    if n == 0:
        return NOTHING
    p = k / n
    centre = (p + _Z**2 / (2 * n)) / (1 + _Z**2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + _Z**2 / (4 * n * n)) / (1 + _Z**2 / n)
    return Estimate(
        value=_q(p, RATE_QUANTUM),
        lower=_q(max(0.0, centre - half), RATE_QUANTUM),
        upper=_q(min(1.0, centre + half), RATE_QUANTUM),
    )


def mean_interval(values: Sequence[Decimal]) -> Estimate:
    n = len(values)
    if n == 0:
        return NOTHING
    mean = sum(values, Decimal(0)) / n
    if n == 1:
        return Estimate(value=mean.quantize(FORECAST_QUANTUM), lower=None, upper=None)
    variance = sum(((v - mean) ** 2 for v in values), Decimal(0)) / (n - 1)
    half = FORECAST_Z * (variance / n).sqrt()
    return Estimate(
        value=mean.quantize(FORECAST_QUANTUM),
        lower=max(Decimal(0), mean - half).quantize(FORECAST_QUANTUM),
        upper=(mean + half).quantize(FORECAST_QUANTUM),
    )


def quantile_interval(ordered: Sequence[float], p: float) -> Estimate:
    """The p-quantile of `ordered` (ascending) by nearest rank, with the order statistics bounding it."""
    n = len(ordered)
    if n == 0:
        return NOTHING
    rank = max(1, math.ceil(p * n))
    spread = _Z * math.sqrt(n * p * (1 - p))
    # The ranks around n·p, rounded half up (the usual approximation of the binomial order statistics: for the
    # median of 10, ranks 2 and 9, as the exact table has them).
    low, high = max(1, math.floor(n * p - spread + 0.5)), min(n, math.floor(n * p + spread + 0.5) + 1)
    return Estimate(
        value=_q(ordered[rank - 1], LATENCY_QUANTUM),
        lower=_q(ordered[low - 1], LATENCY_QUANTUM),
        upper=_q(ordered[high - 1], LATENCY_QUANTUM),
    )


def _q(value: float, quantum: Decimal) -> Decimal:
    return Decimal(str(value)).quantize(quantum)
