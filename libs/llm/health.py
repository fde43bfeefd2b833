"""A provider's health as its worker sees it: the outcomes of its latest calls.

Probing the provider on every health request would cost money and rate limit, so the worker judges from the
calls it made anyway. The check (`azureProvider` / `openaiProvider`) fails while the client is closed, or
when the last FAILURE_STREAK calls all failed on the provider's side: unreachable, 5xx, timed out, rate
limited, or refusing our credentials (401/403). A request the provider refused as invalid, or a text the
content rules refused, says nothing about the provider and resets nothing either way. No call yet: healthy,
since nothing says otherwise.

    outcomes = CallOutcomes(Provider.AZURE)
    outcomes.record(error)                          # GenerationHandler, after each call (None: it answered)
    outcomes.raise_if_failing(client.is_closed())   # the check: ProviderUnhealthy with the latest failure
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from contracts.enums import ErrorType, Provider
from contracts.messages import ErrorInfo
from libs.llm.errors import LLMError

# Consecutive provider-side failures after which the provider is reported failing: one timeout is noise,
# three in a row is what an operator should see (the router's breaker opens at five).
FAILURE_STREAK: Final = 3
PROVIDER_SIDE: Final = frozenset(
    {ErrorType.PROVIDER_UNAVAILABLE, ErrorType.RATE_LIMIT_EXCEEDED, ErrorType.AZURE_TIMEOUT, ErrorType.OPENAI_TIMEOUT}
)
CREDENTIALS_REFUSED: Final = frozenset({401, 403})  # a wrong or revoked key: nothing will pass until it is fixed


class ProviderUnhealthy(LLMError):
    """The provider's latest calls failed (or its client is closed)."""


def check_name(provider: Provider) -> str:
    """The health check's name, as the original plan spells it: azureProvider, openaiProvider."""
    return f"{provider.value}Provider"


def is_provider_side(error: ErrorInfo) -> bool:
    return error.type in PROVIDER_SIDE or error.status_code in CREDENTIALS_REFUSED


@dataclass
class _Failure:
    type: str
    status_code: int | None
    at: float


class CallOutcomes:
    """The latest calls' outcomes of one provider, in one worker process."""

    def __init__(self, provider: Provider, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.provider = provider
        self._clock = clock
        self._streak = 0
        self._last_failure: _Failure | None = None
        self._last_success_at: float | None = None

    def record(self, error: ErrorInfo | None) -> None:
        """One call's outcome: None when the provider answered, else its classified error."""
        if error is None:
            self._streak = 0
            self._last_success_at = self._clock()
        elif is_provider_side(error):
            self._streak += 1
            self._last_failure = _Failure(error.type.value, error.status_code, self._clock())

    @property
    def failing(self) -> bool:
        return self._streak >= FAILURE_STREAK

    def raise_if_failing(self, client_closed: bool = False) -> None:
        if client_closed:
            raise ProviderUnhealthy(f"the {self.provider.value} client is closed")
        failure = self._last_failure
        if not self.failing or failure is None:
            return
        status = f" (HTTP {failure.status_code})" if failure.status_code else ""
        raise ProviderUnhealthy(
            f"last {self._streak} calls failed, latest {failure.type}{status} "
            f"{self._clock() - failure.at:.0f} s ago{self._since_success()}"
        )

    def _since_success(self) -> str:
        if self._last_success_at is None:
            return ", none answered since start"
        return f", last answer {self._clock() - self._last_success_at:.0f} s ago"
