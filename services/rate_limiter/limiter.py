"""The rate-limiter's handlers: delivery.requested → a reserved slot → delivery.scheduled (to the router,
now) and delivery.approved (to the of-sender, delayed to the slot); rate.window.query (its query lane) → an
account's window, read from the plan (window.py).

An urgent request (high or critical: it arrives on the urgent lane) may take the place of bulk deliveries
planned later (libs.ratelimit.window.make_room). Each one displaced is planned again at once, and both its
owners hear of the new slot: the router (delivery.scheduled, under the displaced delivery's workflow) and
the of-sender (delivery.replanned), which holds the approval already delayed for the old slot until the new
one. Were that lost (this replica dying between the plan and the publish), the old approval would go at its
old slot and the of-sender's last check would still keep the limits: the plan is the forecast, the check
the guarantee.

When Redis is unreachable, RATE_LIMITER_DOWN_POLICY decides (libs.ratelimit.down): `hold` re-publishes the
request RATE_LIMITER_DOWN_RETRY_S later, stamped with when its hold began (the router hears of the hold
once), and fails the delivery RATE_LIMITER_DOWN_MAX_HOLD_S after that; `bypass_with_warning` plans with this
replica's own conservative limit.
Either way the of-sender's last check still stands between the plan and the platform.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from contracts import Envelope, Message
from contracts.messages import (
    DeliveryApproved,
    DeliveryFailed,
    DeliveryReplanned,
    DeliveryRequested,
    DeliveryScheduled,
)
from contracts.rate_window import RateWindow, RateWindowQuery
from contracts.routing import URGENT, lane_of
from libs.bus import Bus, Handler, message_priority
from libs.ratelimit import DownAction, LimiterUnavailable, Replanned, Reservation, SlotPlanner, when_down
from libs.ratelimit.metrics import get_ratelimit_metrics
from libs.telemetry import get_logger
from services.rate_limiter.config import RateLimiterSettings
from services.rate_limiter.window import read_window

log = get_logger(__name__)

LIMITER = "the rate limiter's Redis"  # what is unreachable, in the reasons the router hears


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _replanned(envelope: Envelope, request: DeliveryRequested, moved: Replanned) -> list[Envelope]:
    """What the owners of a displaced delivery hear (caused by the urgent request, derived from its id): the
    of-sender its new slot, the router too — under the displaced delivery's own workflow and no user."""
    delivery_id, slot_at = uuid.UUID(moved.delivery_id), _at(moved.slot_ms)
    replanned = DeliveryReplanned(delivery_id=delivery_id, account_id=request.account_id, slot_at=slot_at)
    out = [envelope.derived_child(replanned, key=f"{DeliveryReplanned.TYPE}:{delivery_id}")]
    if moved.workflow_id:
        scheduled = DeliveryScheduled(delivery_id=delivery_id, recipient_id=moved.recipient_id, slot_at=slot_at)
        report = envelope.derived_child(scheduled, key=f"{DeliveryScheduled.TYPE}:{delivery_id}")
        out.append(report.model_copy(update={"workflow_id": uuid.UUID(moved.workflow_id), "user_id": None}))
    log.info(
        "delivery.replanned", delivery_id=moved.delivery_id, slot_at=slot_at.isoformat(), by=str(request.delivery_id)
    )
    return out


class Limiter:
    def __init__(
        self, bus: Bus, planner: SlotPlanner, settings: RateLimiterSettings, *, bypass_planner: SlotPlanner
    ) -> None:
        self.bus = bus
        self.planner = planner
        self.bypass_planner = bypass_planner
        self.settings = settings
        get_ratelimit_metrics()  # the throttle series exist (at 0) from the start, not from the first throttle

    def handlers(self) -> dict[str, Handler]:
        return {DeliveryRequested.TYPE: self.on_requested, RateWindowQuery.TYPE: self.on_window_query}

    async def on_window_query(self, envelope: Envelope) -> RateWindow:
        query = envelope.payload
        assert isinstance(query, RateWindowQuery)
        return await read_window(self.planner, query.account_id, LIMITER)

    async def on_requested(self, envelope: Envelope) -> Message | None:
        request = envelope.payload
        assert isinstance(request, DeliveryRequested)
        try:
            reservation: Reservation | None = await self.planner.reserve(
                request.account_id,
                request.recipient_id,
                str(request.delivery_id),
                workflow_id=str(envelope.workflow_id or ""),
                urgent=lane_of(message_priority()) == URGENT,
            )
        except LimiterUnavailable as exc:
            reservation = await self._limiter_down(envelope, request, exc)
        if reservation is None:
            return None
        if reservation.data_lost:
            log.warning("rate_limiter.state_lost", hold_ms=self.planner.limits.window_ms)
        if reservation.reason in ("account", "account_hour", "recipient"):
            get_ratelimit_metrics().record_throttle(scope=reservation.reason)
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
        await self.bus.publish_all(
            [envelope.derived_child(scheduled), envelope.derived_child(approved)], delays=[0.0, reservation.delay_s]
        )
        if reservation.displaced:
            await self.bus.publish_all(
                [m for moved in reservation.displaced for m in _replanned(envelope, request, moved)]
            )
        return None

    async def _limiter_down(
        self, envelope: Envelope, request: DeliveryRequested, exc: LimiterUnavailable
    ) -> Reservation | None:
        now = datetime.now(UTC)
        decision = when_down(self.settings, request.held_since, now)
        if decision.action is DownAction.BYPASS:
            log.warning("rate_limiter.bypassed", reason=str(exc), limit=self.bypass_planner.limits.account_limit)
            return await self.bypass_planner.reserve(request.account_id, request.recipient_id, str(request.delivery_id))
        error = decision.error(LIMITER, exc)
        if decision.action is DownAction.GIVE_UP:
            log.error("rate_limiter.hold_exhausted", held_s=decision.held_s, reason=str(exc))
            failed = DeliveryFailed(delivery_id=request.delivery_id, recipient_id=request.recipient_id, error=error)
            await self.bus.publish(envelope.derived_child(failed))
            return None
        log.warning("rate_limiter.unavailable", policy="hold", reason=str(exc), held_s=decision.held_s)
        held_request = request.model_copy(update={"held_since": request.held_since or now})
        await self.bus.publish(
            envelope.derived_child(held_request, attempt=envelope.attempt + 1), delay=decision.retry_s
        )
        if decision.begins:
            slot_at = now + timedelta(seconds=decision.retry_s)
            held = DeliveryScheduled(
                delivery_id=request.delivery_id, recipient_id=request.recipient_id, slot_at=slot_at, error=error
            )
            # Its own key: a redelivery that finds Redis back publishes the slot under the type's key.
            await self.bus.publish(envelope.derived_child(held, key="held"))
        return None
