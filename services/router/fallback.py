"""The fallback matrix: what the router does after a generation attempt failed
(docs/architecture.md#generation-and-fallback).

A failure is named by a **scenario**, from the provider that failed and the worker's classified error:

    azure_timeout, openai_timeout           the call timed out (error type azure_timeout / openai_timeout)
    azure_rate_limited, openai_rate_limited HTTP 429 (rate_limit_exceeded)
    provider_unavailable                    5xx, connection failure or an invalid response, either provider

Each scenario has one row: ``fallback``, ``max_retries``, ``delay_s``. Exactly:

- ``fallback`` — where the next attempt goes: ``azure`` or ``openai``; ``other`` (the provider that did not
  just fail); ``queue`` (the provider that failed, again, later — the original plan's "retry later"); ``fail`` (no
  next attempt: the workflow fails).
- ``delay_s`` — seconds between the failure and the start of the next attempt; the attempt is published
  with the bus's delayed delivery (no handler sleeps). When the next attempt goes to the provider that
  failed and that provider asked for a longer wait (``Retry-After``, ``error.retry_after_s``), its wait
  wins. Another provider's ``Retry-After`` says nothing about the target and is ignored.
- ``max_retries`` — how many times *beyond the first* one workflow may recover from this scenario. The
  first occurrence of a scenario always gets its fallback; occurrences 2 … ``max_retries`` + 1 get it
  again; the next occurrence fails the workflow. So ``openai_rate_limited`` (queue, 0, 60 s) re-queues
  the work once, and ``azure_timeout`` (openai, 2, 5 s) moves it to openai after at most three azure
  timeouts. Occurrences are counted per scenario (``provider_unavailable`` counts both providers).

Whatever the rows allow, every workflow is also bounded by (see engine.py): at most ROUTER_MAX_ATTEMPTS
generation requests in total, all providers together (this is what ends azure↔openai ping-pong); no
attempt starting after the deadline or with less than MIN_ATTEMPT_S left before it. A non-retryable error
(``retryable`` false, or type invalid_request / compliance_violation) fails the workflow at once, with no
fallback; so does a retryable error no scenario names.

Rows are configuration: ROUTER_FALLBACK_MATRIX (JSON) overrides whole rows or single fields of the
defaults below, e.g. ``{"openai_rate_limited": {"delay_s": 30}}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict, Field

from contracts.enums import ErrorType, Provider
from contracts.messages import ErrorInfo
from services.router.constants import NEVER_RETRY
from services.router.errors import FallbackConfigError


class Fallback(StrEnum):
    AZURE = "azure"
    OPENAI = "openai"
    OTHER = "other"
    QUEUE = "queue"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class Rule:
    fallback: Fallback
    max_retries: int
    delay_s: float


class RuleOverride(BaseModel):
    """One row of ROUTER_FALLBACK_MATRIX: the fields given replace the default row's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fallback: Fallback | None = None
    max_retries: int | None = Field(default=None, ge=0)
    delay_s: float | None = Field(default=None, ge=0)


# The original plan's defaults (docs/deviations.md), plus provider_unavailable for 5xx / bad responses.
DEFAULT_MATRIX: Mapping[str, Rule] = MappingProxyType(
    {
        "azure_timeout": Rule(Fallback.OPENAI, max_retries=2, delay_s=5.0),
        "azure_rate_limited": Rule(Fallback.OPENAI, max_retries=1, delay_s=1.0),
        "openai_timeout": Rule(Fallback.AZURE, max_retries=2, delay_s=5.0),
        "openai_rate_limited": Rule(Fallback.QUEUE, max_retries=0, delay_s=60.0),
        "provider_unavailable": Rule(Fallback.OTHER, max_retries=1, delay_s=2.0),
    }
)
SCENARIOS: frozenset[str] = frozenset(DEFAULT_MATRIX)


def other(provider: Provider) -> Provider:
    return Provider.OPENAI if provider is Provider.AZURE else Provider.AZURE


def scenario_of(provider: Provider, error: ErrorInfo) -> str | None:
    """The matrix row a failure of `provider` with `error` falls under (None: no row)."""
    if error.type in (ErrorType.AZURE_TIMEOUT, ErrorType.OPENAI_TIMEOUT):
        return f"{provider.value}_timeout"
    if error.type is ErrorType.RATE_LIMIT_EXCEEDED:
        return f"{provider.value}_rate_limited"
    if error.type is ErrorType.PROVIDER_UNAVAILABLE:
        return "provider_unavailable"
    return None


def check_scenarios(names: Mapping[str, object]) -> None:
    """Raise FallbackConfigError when `names` holds a scenario the matrix does not know (a typo)."""
    unknown = sorted(set(names) - SCENARIOS)
    if unknown:
        raise FallbackConfigError(f"unknown fallback scenarios {unknown}; known: {sorted(SCENARIOS)}")


@dataclass(frozen=True, slots=True)
class Retry:
    """Start another attempt on `provider` after `delay_s`; `to` is what fallback_history records."""

    provider: Provider
    delay_s: float
    scenario: str
    to: str
    rerouted_from: Provider | None = None  # the matrix's target, when an open circuit changed it


@dataclass(frozen=True, slots=True)
class GiveUp:
    reason: str


class FallbackMatrix:
    def __init__(self, rules: Mapping[str, Rule] = DEFAULT_MATRIX) -> None:
        check_scenarios(rules)
        missing = SCENARIOS - set(rules)
        if missing:
            raise FallbackConfigError(f"fallback matrix lacks rows {sorted(missing)}")
        self.rules: Mapping[str, Rule] = MappingProxyType(dict(rules))

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, RuleOverride]) -> FallbackMatrix:
        """The defaults with `overrides`' fields applied."""
        check_scenarios(overrides)
        rules = dict(DEFAULT_MATRIX)
        for name, override in overrides.items():
            rules[name] = replace(rules[name], **override.model_dump(exclude_none=True))
        return cls(rules)

    def decide(self, provider: Provider, error: ErrorInfo, occurrences: Mapping[str, int]) -> Retry | GiveUp:
        """What to do after `provider` failed with `error`; `occurrences` counts earlier recoveries per
        scenario in this workflow (the workflow's bounds — attempts, deadline — are the caller's)."""
        if not error.retryable or error.type in NEVER_RETRY:
            return GiveUp(f"{error.type.value} is not retryable")
        scenario = scenario_of(provider, error)
        if scenario is None:
            return GiveUp(f"no fallback for {error.type.value}")
        rule = self.rules[scenario]
        if rule.fallback is Fallback.FAIL:
            return GiveUp(f"{scenario}: the fallback matrix says fail")
        seen = occurrences.get(scenario, 0)
        if seen > rule.max_retries:
            return GiveUp(
                f"{scenario} occurred {seen + 1} times; the fallback matrix allows {rule.max_retries} retries"
            )
        if rule.fallback is Fallback.QUEUE:
            target = provider
        elif rule.fallback is Fallback.OTHER:
            target = other(provider)
        else:
            target = Provider(rule.fallback.value)
        delay = rule.delay_s
        if target is provider and error.retry_after_s is not None:
            delay = max(delay, error.retry_after_s)
        to = Fallback.QUEUE.value if target is provider else target.value
        return Retry(target, delay, scenario, to)
