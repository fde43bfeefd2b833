"""The one decision both delivery services make while their limiter's Redis is down (libs.ratelimit.down)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.enums import ErrorType
from libs.ratelimit import DeliveryLimitSettings, DownAction, DownPolicy, when_down

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def settings(policy: DownPolicy = DownPolicy.HOLD) -> DeliveryLimitSettings:
    return DeliveryLimitSettings(
        rate_limiter_down_policy=policy, rate_limiter_down_retry_s=2.0, rate_limiter_down_max_hold_s=600.0
    )


class TestWhenDown:
    def test_bypass_policy_bypasses_however_long_the_delivery_waited(self) -> None:
        """bypass_with_warning: BYPASS, even for a delivery held long ago under another policy."""
        decision = when_down(settings(DownPolicy.BYPASS_WITH_WARNING), NOW - timedelta(hours=1), NOW)
        assert decision.action is DownAction.BYPASS

    def test_a_first_hold_begins_and_retries_after_the_retry_delay(self) -> None:
        """hold, never held before: HOLD for RATE_LIMITER_DOWN_RETRY_S, marked as the hold's beginning."""
        decision = when_down(settings(), None, NOW)
        assert (decision.action, decision.held_s, decision.retry_s, decision.begins) == (DownAction.HOLD, 0, 2.0, True)

    def test_a_continued_hold_counts_from_its_beginning_and_is_not_reported_again(self) -> None:
        """hold, held 599 s: HOLD again, with the time held, not a beginning."""
        decision = when_down(settings(), NOW - timedelta(seconds=599), NOW)
        assert (decision.action, decision.held_s, decision.begins) == (DownAction.HOLD, 599.0, False)

    def test_held_for_the_bound_gives_up_with_a_final_reason(self) -> None:
        """hold, held RATE_LIMITER_DOWN_MAX_HOLD_S: GIVE_UP, and its error is final and says for how long."""
        decision = when_down(settings(), NOW - timedelta(seconds=600), NOW)
        error = decision.error("the send log (Redis)", ConnectionError("refused"))
        assert decision.action is DownAction.GIVE_UP
        assert error.type is ErrorType.PROVIDER_UNAVAILABLE and not error.retryable
        assert error.message == "the send log (Redis) was unreachable for 600s, delivery given up: refused"

    def test_a_hold_error_is_retryable_after_the_retry_delay(self) -> None:
        """The error of a HOLD tells the router it is held and when it is asked again."""
        error = when_down(settings(), None, NOW).error("the rate limiter's Redis", ConnectionError("refused"))
        assert error.retryable and error.retry_after_s == 2.0
        assert error.message == "held: the rate limiter's Redis is unreachable (refused)"
