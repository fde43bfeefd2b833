"""What a delivery report says of the rate limiter: read from ErrorInfo.limiter_down, never from the error type."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from contracts.enums import DeliveryState, ErrorType, RateLimiterState
from contracts.messages import DeliveryFailed, DeliveryScheduled, ErrorInfo
from services.router.delivery import Report

DELIVERY = uuid.uuid4()
SLOT = datetime(2026, 1, 1, tzinfo=UTC)
LIMITER_DOWN = ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message="held", retryable=True, limiter_down=True)
PLATFORM_DOWN = ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message="503", retryable=True)


class TestReportLimiter:
    def test_a_hold_for_the_limiters_redis_is_throttled(self) -> None:
        """A slot pushed back because the limiter's Redis is down shows the rate limiter throttled."""
        report = Report.of(DeliveryScheduled(delivery_id=DELIVERY, recipient_id="f", slot_at=SLOT, error=LIMITER_DOWN))
        assert report.kind is DeliveryState.PENDING and report.limiter is RateLimiterState.THROTTLED

    def test_a_delivery_given_up_for_the_limiters_redis_is_rejected(self) -> None:
        """A delivery failed by the down policy shows the rate limiter rejected."""
        report = Report.of(DeliveryFailed(delivery_id=DELIVERY, recipient_id="f", error=LIMITER_DOWN))
        assert report.limiter is RateLimiterState.REJECTED

    def test_another_unavailable_dependency_says_nothing_of_the_limiter(self) -> None:
        """PROVIDER_UNAVAILABLE without limiter_down: a failed delivery says nothing of the rate limiter,
        a rescheduled one that its slot stands."""
        failed = Report.of(DeliveryFailed(delivery_id=DELIVERY, recipient_id="f", error=PLATFORM_DOWN))
        moved = Report.of(DeliveryScheduled(delivery_id=DELIVERY, recipient_id="f", slot_at=SLOT, error=PLATFORM_DOWN))
        assert failed.limiter is None and moved.limiter is RateLimiterState.APPROVED

    def test_limiter_down_is_optional_on_the_wire(self) -> None:
        """An ErrorInfo from a producer that does not know the field reads as not limiter_down."""
        error = ErrorInfo.model_validate({"type": "provider_unavailable", "message": "x", "retryable": False})
        assert error.limiter_down is False
