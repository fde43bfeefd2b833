"""The rate-limiter's handler: delivery.requested → a reserved slot → delivery.scheduled (to the router,
now) and delivery.approved (to the of-sender, delayed to the slot).

When Redis is unreachable, RATE_LIMITER_DOWN_POLICY decides: `hold` re-publishes the request
RATE_LIMITER_DOWN_RETRY_S later (the router hears of the hold once) and fails the delivery after
RATE_LIMITER_DOWN_MAX_HOLD_S; `bypass_with_warning` plans with this replica's own conservative limit.
Either way the of-sender's last check still stands between the plan and the platform.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts import Envelope, Message
from contracts.enums import ErrorType
from contracts.messages import DeliveryApproved, DeliveryFailed, DeliveryRequested, DeliveryScheduled, ErrorInfo
from libs.bus import Bus, Handler
from libs.ratelimit import DownPolicy, LimiterUnavailable, Reservation, SlotPlanner
from libs.telemetry import get_logger, get_metrics
from services.rate_limiter.config import RateLimiterSettings

log = get_logger(__name__)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class Limiter:
    def __init__(
        self, bus: Bus, planner: SlotPlanner, settings: RateLimiterSettings, *, bypass_planner: SlotPlanner
    ) -> None:
        self.bus = bus
        self.planner = planner
        self.bypass_planner = bypass_planner
        self.settings = settings

    def handlers(self) -> dict[str, Handler]:
        return {DeliveryRequested.TYPE: self.on_requested}

    async def on_requested(self, envelope: Envelope) -> Message | None:
        request = envelope.payload
        assert isinstance(request, DeliveryRequested)
        try:
            reservation: Reservation | None = await self.planner.reserve(
                request.account_id, request.recipient_id, str(request.delivery_id)
            )
        except LimiterUnavailable as exc:
            reservation = await self._limiter_down(envelope, request, exc)
        if reservation is None:
            return None
        if reservation.data_lost:
            log.warning("rate_limiter.state_lost", hold_ms=self.planner.limits.window_ms)
        if reservation.reason in ("account", "account_hour", "recipient"):
            get_metrics().record_throttle(scope=reservation.reason)
        slot_at = _at(reservation.slot_ms)
        log.info(
            "delivery.slot_reserved",
            delivery_id=str(request.delivery_id),
            delay_s=reservation.delay_s,
            reason=reservation.reason,
        )
        # Ids derived from the request's: a redelivered request publishes the same envelopes again.
        scheduled = DeliveryScheduled(
            delivery_id=request.delivery_id, recipient_id=request.recipient_id, slot_at=slot_at
        )
        approved = DeliveryApproved(
            delivery_id=request.delivery_id,
            account_id=request.account_id,
            recipient_id=request.recipient_id,
            text=request.text,
            slot_at=slot_at,
        )
        await self.bus.publish(envelope.child(scheduled, id=uuid.uuid5(envelope.id, DeliveryScheduled.TYPE)))
        await self.bus.publish(
            envelope.child(approved, id=uuid.uuid5(envelope.id, DeliveryApproved.TYPE)), delay=reservation.delay_s
        )
        return None

    async def _limiter_down(
        self, envelope: Envelope, request: DeliveryRequested, exc: LimiterUnavailable
    ) -> Reservation | None:
        settings = self.settings
        if settings.rate_limiter_down_policy is DownPolicy.BYPASS_WITH_WARNING:
            log.warning("rate_limiter.bypassed", reason=str(exc), limit=self.bypass_planner.limits.account_limit)
            return await self.bypass_planner.reserve(request.account_id, request.recipient_id, str(request.delivery_id))
        held_s = (envelope.attempt - 1) * settings.rate_limiter_down_retry_s
        if held_s >= settings.rate_limiter_down_max_hold_s:
            error = ErrorInfo(
                type=ErrorType.PROVIDER_UNAVAILABLE,
                message=f"the rate limiter's Redis was unreachable for {held_s:.0f}s, delivery given up: {exc}",
                retryable=False,
            )
            log.error("rate_limiter.hold_exhausted", held_s=held_s, reason=str(exc))
            failed = DeliveryFailed(delivery_id=request.delivery_id, recipient_id=request.recipient_id, error=error)
            await self.bus.publish(envelope.child(failed))
            return None
        retry_s = settings.rate_limiter_down_retry_s
        log.warning("rate_limiter.unavailable", policy="hold", reason=str(exc), held_s=held_s)
        await self.bus.publish(envelope.child(request, attempt=envelope.attempt + 1), delay=retry_s)
        if envelope.attempt == 1:  # the router hears of the hold once, not at every re-check
            error = ErrorInfo(
                type=ErrorType.PROVIDER_UNAVAILABLE,
                message=f"held: the rate limiter's Redis is unreachable ({exc})",
                retryable=True,
                retry_after_s=retry_s,
            )
            slot_at = datetime.now(UTC) + timedelta(seconds=retry_s)
            held = DeliveryScheduled(
                delivery_id=request.delivery_id, recipient_id=request.recipient_id, slot_at=slot_at, error=error
            )
            await self.bus.publish(envelope.child(held))
        return None
