"""The fallback matrix's decisions, exactly as its docstring defines them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from contracts.enums import ErrorType, Provider
from contracts.messages import ErrorInfo
from services.router.config import RouterSettings
from services.router.errors import FallbackConfigError
from services.router.fallback import DEFAULT_MATRIX, Fallback, FallbackMatrix, GiveUp, Retry, RuleOverride

AZURE, OPENAI = Provider.AZURE, Provider.OPENAI


def error(kind: ErrorType, *, retryable: bool = True, retry_after_s: float | None = None) -> ErrorInfo:
    return ErrorInfo(type=kind, message="x", retryable=retryable, retry_after_s=retry_after_s)


class TestDefaults:
    def test_seed_defaults(self) -> None:
        """The defaults are the original plan's rows plus provider_unavailable → other."""
        rows = {name: (r.fallback.value, r.max_retries, r.delay_s) for name, r in DEFAULT_MATRIX.items()}
        assert rows == {
            "azure_timeout": ("openai", 2, 5.0),
            "azure_rate_limited": ("openai", 1, 1.0),
            "openai_timeout": ("azure", 2, 5.0),
            "openai_rate_limited": ("queue", 0, 60.0),
            "provider_unavailable": ("other", 1, 2.0),
        }

    @pytest.mark.parametrize(
        ("failed", "kind", "target", "to", "delay"),
        [
            (AZURE, ErrorType.AZURE_TIMEOUT, OPENAI, "openai", 5.0),
            (AZURE, ErrorType.RATE_LIMIT_EXCEEDED, OPENAI, "openai", 1.0),
            (OPENAI, ErrorType.OPENAI_TIMEOUT, AZURE, "azure", 5.0),
            (OPENAI, ErrorType.RATE_LIMIT_EXCEEDED, OPENAI, "queue", 60.0),
            (AZURE, ErrorType.PROVIDER_UNAVAILABLE, OPENAI, "openai", 2.0),
            (OPENAI, ErrorType.PROVIDER_UNAVAILABLE, AZURE, "azure", 2.0),
        ],
    )
    def test_first_occurrence_takes_the_rows_fallback(
        self, failed: Provider, kind: ErrorType, target: Provider, to: str, delay: float
    ) -> None:
        """The first occurrence of each scenario gets its row's target and delay."""
        decision = FallbackMatrix().decide(failed, error(kind), {})
        assert decision == Retry(target, delay, decision.scenario, to)  # type: ignore[union-attr]


SCENARIO_FAILURES = {
    "azure_timeout": (AZURE, ErrorType.AZURE_TIMEOUT),
    "azure_rate_limited": (AZURE, ErrorType.RATE_LIMIT_EXCEEDED),
    "openai_timeout": (OPENAI, ErrorType.OPENAI_TIMEOUT),
    "openai_rate_limited": (OPENAI, ErrorType.RATE_LIMIT_EXCEEDED),
    "provider_unavailable": (OPENAI, ErrorType.PROVIDER_UNAVAILABLE),
}


class TestMaxRetries:
    @pytest.mark.parametrize("scenario", sorted(SCENARIO_FAILURES))
    def test_scenario_is_survivable_max_retries_plus_one_times(self, scenario: str) -> None:
        """Occurrences 1 … max_retries+1 of a scenario get the fallback; the next fails the workflow."""
        provider, kind = SCENARIO_FAILURES[scenario]
        matrix, allowed = FallbackMatrix(), DEFAULT_MATRIX[scenario].max_retries
        for seen in range(allowed + 1):
            decision = matrix.decide(provider, error(kind), {scenario: seen})
            assert isinstance(decision, Retry) and decision.scenario == scenario
        refused = matrix.decide(provider, error(kind), {scenario: allowed + 1})
        assert isinstance(refused, GiveUp) and f"allows {allowed} retries" in refused.reason

    def test_occurrences_are_counted_per_scenario(self) -> None:
        """Recoveries from one scenario do not use up another's."""
        decision = FallbackMatrix().decide(AZURE, error(ErrorType.AZURE_TIMEOUT), {"provider_unavailable": 9})
        assert isinstance(decision, Retry)


class TestDecisions:
    def test_retry_after_wins_when_longer_for_the_same_provider(self) -> None:
        """A queued retry waits for the provider's Retry-After when it is longer than the row's delay."""
        decision = FallbackMatrix().decide(OPENAI, error(ErrorType.RATE_LIMIT_EXCEEDED, retry_after_s=90), {})
        assert isinstance(decision, Retry) and decision.delay_s == 90
        shorter = FallbackMatrix().decide(OPENAI, error(ErrorType.RATE_LIMIT_EXCEEDED, retry_after_s=5), {})
        assert isinstance(shorter, Retry) and shorter.delay_s == 60

    def test_retry_after_of_the_failed_provider_does_not_delay_the_other(self) -> None:
        """azure's Retry-After does not hold back the fallback to openai."""
        decision = FallbackMatrix().decide(AZURE, error(ErrorType.RATE_LIMIT_EXCEEDED, retry_after_s=90), {})
        assert isinstance(decision, Retry) and decision.provider is OPENAI and decision.delay_s == 1.0

    @pytest.mark.parametrize("kind", [ErrorType.INVALID_REQUEST, ErrorType.COMPLIANCE_VIOLATION])
    def test_request_errors_never_fall_back(self, kind: ErrorType) -> None:
        """invalid_request and compliance_violation give up, even when flagged retryable."""
        assert isinstance(FallbackMatrix().decide(AZURE, error(kind, retryable=True), {}), GiveUp)

    def test_non_retryable_error_gives_up(self) -> None:
        """An error the worker marked non-retryable gives up whatever its type."""
        decision = FallbackMatrix().decide(AZURE, error(ErrorType.PROVIDER_UNAVAILABLE, retryable=False), {})
        assert isinstance(decision, GiveUp) and "not retryable" in decision.reason

    def test_error_without_a_row_gives_up(self) -> None:
        """A retryable error no scenario names gives up with that reason."""
        decision = FallbackMatrix().decide(AZURE, error(ErrorType.DATABASE_ERROR), {})
        assert isinstance(decision, GiveUp) and decision.reason == "no fallback for database_error"

    def test_fail_row_gives_up(self) -> None:
        """A row configured to `fail` gives up on the first occurrence."""
        matrix = FallbackMatrix.from_overrides({"azure_timeout": RuleOverride(fallback=Fallback.FAIL)})
        assert isinstance(matrix.decide(AZURE, error(ErrorType.AZURE_TIMEOUT), {}), GiveUp)


class TestConfiguration:
    def test_override_changes_only_the_given_fields(self) -> None:
        """An override keeps the default row's other fields."""
        matrix = FallbackMatrix.from_overrides({"openai_rate_limited": RuleOverride(delay_s=30)})
        rule = matrix.rules["openai_rate_limited"]
        assert (rule.fallback, rule.max_retries, rule.delay_s) == (Fallback.QUEUE, 0, 30)
        assert matrix.rules["azure_timeout"] == DEFAULT_MATRIX["azure_timeout"]

    def test_unknown_scenario_is_refused(self) -> None:
        """A misspelt scenario is a configuration error, not a silently ignored row."""
        with pytest.raises(FallbackConfigError, match="azure_timout"):
            FallbackMatrix.from_overrides({"azure_timout": RuleOverride(delay_s=1)})

    def test_matrix_from_environment_json(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """ROUTER_FALLBACK_MATRIX is read as JSON into the settings."""
        monkeypatch.setenv("ROUTER_FALLBACK_MATRIX", '{"azure_timeout": {"max_retries": 0, "fallback": "queue"}}')
        overrides = RouterSettings().router_fallback_matrix
        assert overrides == {"azure_timeout": RuleOverride(max_retries=0, fallback=Fallback.QUEUE)}

    def test_bad_environment_json_stops_the_start(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An unknown scenario or field in ROUTER_FALLBACK_MATRIX fails the settings."""
        monkeypatch.setenv("ROUTER_FALLBACK_MATRIX", '{"nope": {"delay_s": 1}}')
        with pytest.raises(ValidationError, match="unknown fallback scenarios"):
            RouterSettings()
        monkeypatch.setenv("ROUTER_FALLBACK_MATRIX", '{"azure_timeout": {"delay": 1}}')
        with pytest.raises(ValidationError):
            RouterSettings()
