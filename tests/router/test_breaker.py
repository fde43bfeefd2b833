"""The per-provider circuit breaker, on a fake clock."""

from __future__ import annotations

from libs.telemetry import CIRCUIT_CLOSED, CIRCUIT_HALF_OPEN, CIRCUIT_OPEN
from services.router.breaker import CircuitBreaker, CircuitState


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state(b: CircuitBreaker) -> CircuitState:
    # A function, not the property, so that type checkers do not assume it stays what it was.
    return b.state


def breaker(clock: Clock, threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker("azure", failure_threshold=threshold, open_s=10, probe_timeout_s=60, clock=clock)


class TestCircuitBreaker:
    def test_opens_after_consecutive_failures(self) -> None:
        """`failure_threshold` consecutive failures open the circuit; fewer do not."""
        clock = Clock()
        b = breaker(clock)
        b.record_failure()
        b.record_failure()
        assert state(b) is CircuitState.CLOSED and b.allow()
        b.record_failure()
        assert state(b) is CircuitState.OPEN and not b.allow()

    def test_success_resets_the_count(self) -> None:
        """A success in between restarts the count of consecutive failures."""
        b = breaker(Clock())
        for _ in range(2):
            b.record_failure()
        b.record_success()
        for _ in range(2):
            b.record_failure()
        assert state(b) is CircuitState.CLOSED

    def test_half_open_lets_one_probe_through(self) -> None:
        """After open_s the circuit is half-open and allows exactly one attempt."""
        clock = Clock()
        b = breaker(clock, threshold=1)
        b.record_failure()
        clock.now += 10
        assert state(b) is CircuitState.HALF_OPEN
        assert b.allow()
        assert not b.allow()

    def test_successful_probe_closes(self) -> None:
        """The probe's success closes the circuit."""
        clock = Clock()
        b = breaker(clock, threshold=1)
        b.record_failure()
        clock.now += 10
        assert b.allow()
        b.record_success()
        assert state(b) is CircuitState.CLOSED and b.allow() and b.allow()

    def test_failed_probe_opens_again(self) -> None:
        """The probe's failure opens the circuit for another open_s."""
        clock = Clock()
        b = breaker(clock, threshold=3)
        for _ in range(3):
            b.record_failure()
        clock.now += 10
        assert b.allow()
        b.record_failure()
        assert state(b) is CircuitState.OPEN
        clock.now += 9.9
        assert not b.allow()

    def test_lost_probe_frees_its_slot_after_the_probe_timeout(self) -> None:
        """A probe whose result never comes stops blocking after probe_timeout_s."""
        clock = Clock()
        b = breaker(clock, threshold=1)
        b.record_failure()
        clock.now += 10
        assert b.allow()
        clock.now += 59
        assert not b.allow()
        clock.now += 1
        assert b.allow()

    def test_gauge_values(self) -> None:
        """The exported gauge is 0 closed, 1 half-open, 2 open."""
        clock = Clock()
        b = breaker(clock, threshold=1)
        assert b.gauge() == CIRCUIT_CLOSED
        b.record_failure()
        assert b.gauge() == CIRCUIT_OPEN
        clock.now += 10
        assert b.gauge() == CIRCUIT_HALF_OPEN
