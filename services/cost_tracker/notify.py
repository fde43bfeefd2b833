"""The cost.alert handler: deliver a raised alert to its channels, each delivery exactly once if it can be.

Each (alert, channel) delivery is leased in the database before the send, so duplicates of the message and
concurrent replicas never send twice (short of a crash between a channel's acceptance and our record of
it, the one window no at-least-once system closes). A failed send is retried by re-publishing the alert
delayed (COST_ALERT_RETRY_BASE_S, doubling, capped) up to COST_ALERT_MAX_ATTEMPTS; the handler itself
returns, so the queue — and accounting behind it — keeps moving while Slack is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import timedelta

from contracts import Envelope, Message
from contracts.messages import CostAlert
from libs.bus import Bus
from libs.telemetry import get_logger
from services.cost_tracker.channels import Channel
from services.cost_tracker.config import CostTrackerSettings
from services.cost_tracker.constants import DELIVERY_LEASE_MARGIN_S
from services.cost_tracker.errors import ChannelError
from services.cost_tracker.limits import Clock, utcnow
from services.cost_tracker.model import Alert, DeliveryStatus, alert_id_for
from services.cost_tracker.store import CostStore

log = get_logger(__name__)


class Notifier:
    def __init__(
        self,
        bus: Bus,
        store: CostStore,
        channels: Mapping[str, Channel],
        settings: CostTrackerSettings,
        *,
        clock: Clock = utcnow,
    ) -> None:
        self._bus = bus
        self._store = store
        self.channels = channels
        self._settings = settings
        self._clock = clock

    async def on_alert(self, envelope: Envelope) -> Message | None:
        raised = envelope.payload
        assert isinstance(raised, CostAlert)
        alert_id = raised.alert_id or alert_id_for(raised.threshold_id, raised.period, raised.period_start)
        alert = await self._store.get_alert(alert_id)
        if alert is None:
            # Published only after the alert was stored, so this one comes from elsewhere: nothing to send.
            log.warning("cost.alert.unknown", alert_id=str(alert_id))
            return None
        attempt = envelope.attempt
        last = attempt >= self._settings.cost_alert_max_attempts
        pending = [d.channel for d in alert.deliveries if not d.status.final]
        await asyncio.gather(*(self._deliver(alert, channel, attempt, last) for channel in pending))
        after = await self._store.get_alert(alert_id)
        unfinished = [d.channel for d in (after or alert).deliveries if not d.status.final]
        if unfinished and not last:
            delay = min(
                self._settings.cost_alert_retry_cap_s, self._settings.cost_alert_retry_base_s * 2 ** (attempt - 1)
            )
            await self._bus.publish(envelope.derived_child(raised, key="retry", attempt=attempt + 1), delay=delay)
            log.info("cost.alert.retry_scheduled", alert_id=str(alert_id), channels=unfinished, delay_s=delay)
        return None

    async def _deliver(self, alert: Alert, name: str, attempt: int, last: bool) -> None:
        now = self._clock()
        timeout = self._settings.cost_alert_channel_timeout_s
        lease = now + timedelta(seconds=timeout + DELIVERY_LEASE_MARGIN_S)
        if not await self._store.claim_delivery(alert.id, name, now, lease):
            return  # done meanwhile, or another replica is sending it
        channel = self.channels.get(name)
        if channel is None:
            await self._store.finish_delivery(alert.id, name, DeliveryStatus.SKIPPED, "channel not configured", now)
            return
        try:
            async with asyncio.timeout(timeout):
                await channel.send(alert)
        except (ChannelError, TimeoutError) as exc:
            error = (
                exc if isinstance(exc, ChannelError) else ChannelError(name, f"no answer in {timeout}s", retryable=True)
            )
            status = DeliveryStatus.RETRYING if error.retryable and not last else DeliveryStatus.FAILED
            await self._store.finish_delivery(alert.id, name, status, str(error), self._clock())
            log.warning(
                "cost.alert.delivery_failed",
                alert_id=str(alert.id),
                channel=name,
                attempt=attempt,
                retryable=error.retryable,
                gave_up=status is DeliveryStatus.FAILED,
                reason=str(error),
            )
            return
        await self._store.finish_delivery(alert.id, name, DeliveryStatus.SENT, None, self._clock())
        log.info("cost.alert.delivered", alert_id=str(alert.id), channel=name, attempt=attempt)
