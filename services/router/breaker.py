"""Circuit breakers, one per provider, in the memory of each router replica.

The router never calls a provider itself: it learns each attempt's outcome from generation.completed /
generation.failed and asks the breaker before choosing where the next attempt goes.

    closed     attempts flow; `failure_threshold` consecutive counted failures (constants.BREAKER_FAILURES)
               open the circuit
    open       the provider is avoided for `open_s`, then the circuit is half-open
    half-open  one attempt (the probe) is let through; its success closes the circuit, its failure opens
               it again. A probe whose result never arrives frees its slot after `probe_timeout_s`.

Any success closes the circuit, whichever attempt it answers: a provider that just answered is up.
Per replica on purpose: each replica learns from the results it handles, which is enough to steer its own
choices, and a shared breaker would cost a round trip per decision. The states are exported as the
circuit_breaker_state gauge (services.router.metrics.register_circuit_state).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from contracts.enums import Provider
from libs.telemetry import CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN, get_logger
from services.router.errors import Unhealthy
from services.router.fallback import other

log = get_logger(__name__)

Clock = Callable[[], float]
"""Monotonic seconds (time.monotonic; tests pass a fake)."""


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_GAUGE = {
    CircuitState.CLOSED: CIRCUIT_CLOSED,
    CircuitState.HALF_OPEN: CIRCUIT_HALF_OPEN,
    CircuitState.OPEN: CIRCUIT_OPEN,
}


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        open_s: float,
        probe_timeout_s: float,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_s = open_s
        self.probe_timeout_s = probe_timeout_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_at: float | None = None

    @property
    def state(self) -> CircuitState:
        if self._opened_at is None:
            return CircuitState.CLOSED
        if self._clock() - self._opened_at < self.open_s:
            return CircuitState.OPEN
        return CircuitState.HALF_OPEN

    def allow(self) -> bool:
        """Whether an attempt may go to this provider now; in half-open, True claims the one probe."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN:
            return False
        now = self._clock()
        if self._probe_at is not None and now - self._probe_at < self.probe_timeout_s:
            return False
        self._probe_at = now
        log.info("circuit.probe", provider=self.name)
        return True

    def record_success(self) -> None:
        if self._opened_at is not None:
            log.info("circuit.closed", provider=self.name)
        self._failures = 0
        self._opened_at = None
        self._probe_at = None

    def record_failure(self) -> None:
        state = self.state
        self._failures += 1
        if state is CircuitState.HALF_OPEN or (
            state is CircuitState.CLOSED and self._failures >= self.failure_threshold
        ):
            self._opened_at = self._clock()
            self._probe_at = None
            log.warning("circuit.opened", provider=self.name, failures=self._failures, open_s=self.open_s)

    def gauge(self) -> int:
        return _GAUGE[self.state]

    def raise_if_not_closed(self) -> None:
        """The provider's health report: raises Unhealthy, with since when, while the circuit is not closed."""
        state = self.state
        if state is CircuitState.CLOSED or self._opened_at is None:
            return
        since = self._clock() - self._opened_at
        raise Unhealthy(f"circuit {state.value} for {since:.0f} s, after {self._failures} failed calls")


class Breakers:
    """The breaker of each provider, and the choice of a provider that honours them."""

    def __init__(
        self, *, failure_threshold: int, open_s: float, probe_timeout_s: float, clock: Clock = time.monotonic
    ) -> None:
        self.by_provider = {
            provider: CircuitBreaker(
                provider.value,
                failure_threshold=failure_threshold,
                open_s=open_s,
                probe_timeout_s=probe_timeout_s,
                clock=clock,
            )
            for provider in Provider
        }

    def __getitem__(self, provider: Provider) -> CircuitBreaker:
        return self.by_provider[provider]

    def choose(self, preferred: Provider) -> Provider:
        """`preferred` unless its circuit refuses and the other's allows; with both refusing, `preferred`
        anyway: failing the workflow here would be worse than letting the next probe decide."""
        if self.by_provider[preferred].allow():
            return preferred
        alternative = other(preferred)
        if self.by_provider[alternative].allow():
            return alternative
        return preferred

    def states(self) -> dict[str, int]:
        """{provider: gauge value} for services.router.metrics.register_circuit_state."""
        return {provider.value: breaker.gauge() for provider, breaker in self.by_provider.items()}
