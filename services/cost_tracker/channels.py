"""Where alerts are delivered: a Slack incoming webhook (aiohttp), an SNS topic and email through SES
(aiobotocore) — the operators' channels — and a user's own destinations: their e-mail (SES) and their
webhook (a signed JSON POST, as the router's workflow webhooks: libs.callbacks). Each channel sends one
alert or raises ChannelError saying whether a retry may help. A user's channels read the destination when
they send, so a removed or changed address applies to the next attempt.

    channels = Channels(); await channels.open(settings, store)      # only the configured ones
    await channels["slack"].send(alert)
    await channels.close()

Failures are classified by HTTP status and AWS error code, never by message text: 429, 5xx, throttling and
connection failures are retryable; other 4xx and rejected messages (an unverified SES sender, a missing
topic) are not — retrying would only repeat them.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from libs.callbacks import H_EVENT_ID, H_EVENT_TYPE, H_SIGNATURE, callback_url_problem, sign
from libs.telemetry import register_secret_url
from services.cost_tracker.config import CostTrackerSettings
from services.cost_tracker.constants import (
    CHANNEL_EMAIL,
    CHANNEL_SLACK,
    CHANNEL_SNS,
    CHANNEL_USER_EMAIL,
    CHANNEL_USER_WEBHOOK,
    SNS_SUBJECT_MAX,
)
from services.cost_tracker.errors import ChannelError
from services.cost_tracker.model import Alert, AlertDestination
from services.cost_tracker.store import CostStore

# The X-Event-Type of a user's alert webhook.
ALERT_EVENT: Final = "cost.alert"

# AWS error codes that mean "not now" rather than "never" (besides HTTP 429 and 5xx).
_AWS_RETRYABLE_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded", "ServiceUnavailable",
     "InternalError", "InternalFailure", "KMSThrottlingException"}
)  # fmt: skip


def subject(alert: Alert) -> str:
    who = "global" if alert.scope_user_id is None else f"user {alert.scope_user_id}"
    return f"[{alert.severity.value.upper()}] Cost alert: {who} {alert.period.value} ${alert.spent_usd}"


def as_json(alert: Alert) -> dict[str, Any]:
    """The alert for machines (SNS): amounts as exact decimal strings."""
    return {
        "alertId": str(alert.id),
        "kind": alert.kind,
        "thresholdId": alert.threshold_id,
        "userId": alert.scope_user_id,
        "period": alert.period.value,
        "periodStart": alert.period_start.astimezone(UTC).date().isoformat(),  # the day, as before hours
        "periodStartedAt": alert.period_start.isoformat(),
        "spentUsd": str(alert.spent_usd),
        "limitUsd": str(alert.limit_usd),
        "severity": alert.severity.value,
        "message": alert.message,
        "raisedAt": alert.raised_at.isoformat(),
    }


class Channel(ABC):
    name: str

    @abstractmethod
    async def send(self, alert: Alert) -> None:
        """Deliver `alert`; raises ChannelError."""


class SlackChannel(Channel):
    name = CHANNEL_SLACK

    def __init__(self, session: aiohttp.ClientSession, webhook_url: str) -> None:
        self._session = session
        self._url = webhook_url

    async def send(self, alert: Alert) -> None:
        body = {
            "text": f"{subject(alert)}\n{alert.message}",
            "attachments": [
                {
                    "color": {"critical": "danger", "warning": "warning"}.get(alert.severity.value, "good"),
                    "fields": [
                        {"title": "Spent", "value": f"${alert.spent_usd}", "short": True},
                        {"title": "Threshold", "value": f"${alert.limit_usd}", "short": True},
                        {"title": "Period", "value": f"{alert.period.value} from {alert.period_start}", "short": True},
                        {"title": "Alert", "value": str(alert.id), "short": True},
                    ],
                }
            ],
        }
        try:
            async with self._session.post(
                self._url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
            ) as response:
                if response.status < 300:
                    return
                retryable = response.status == 429 or response.status >= 500
                raise ChannelError(self.name, f"webhook answered HTTP {response.status}", retryable=retryable)
        except aiohttp.ClientError as exc:
            raise ChannelError(self.name, f"{type(exc).__name__}: {exc}", retryable=True) from exc


class SnsChannel(Channel):
    name = CHANNEL_SNS

    def __init__(self, client: Any, topic_arn: str) -> None:
        self._client = client
        self._topic = topic_arn

    async def send(self, alert: Alert) -> None:
        with _aws_errors(self.name):
            await self._client.publish(
                TopicArn=self._topic,
                Subject=subject(alert)[:SNS_SUBJECT_MAX],
                Message=orjson.dumps(as_json(alert)).decode(),
            )


class EmailChannel(Channel):
    name = CHANNEL_EMAIL

    def __init__(self, client: Any, sender: str, recipients: list[str]) -> None:
        self._client = client
        self._sender = sender
        self._recipients = recipients

    async def send(self, alert: Alert) -> None:
        await self.send_to(alert, self._recipients, channel=self.name)

    async def send_to(self, alert: Alert, recipients: list[str], *, channel: str) -> None:
        text = (
            f"{alert.message}\n\nSpent: ${alert.spent_usd}\nThreshold: ${alert.limit_usd}\n"
            f"Period: {alert.period.value} from {alert.period_start}\nAlert: {alert.id}\n"
        )
        with _aws_errors(channel):
            await self._client.send_email(
                Source=self._sender,
                Destination={"ToAddresses": recipients},
                Message={"Subject": {"Data": subject(alert)}, "Body": {"Text": {"Data": text}}},
            )


class UserWebhookChannel(Channel):
    """POSTs the alert (as_json, with the event and the time sent) to the user's webhook, signed."""

    name = CHANNEL_USER_WEBHOOK

    def __init__(
        self, session: aiohttp.ClientSession, store: CostStore, secret: bytes, *, allow_local_http: bool
    ) -> None:
        self._session = session
        self._store = store
        self._secret = secret
        self._allow_local_http = allow_local_http

    async def send(self, alert: Alert) -> None:
        url = (await _destination(self.name, self._store, alert)).webhook_url
        if not url:
            raise ChannelError(self.name, "the user removed their webhook", retryable=False)
        problem = callback_url_problem(url, allow_local_http=self._allow_local_http)
        if problem is not None:
            raise ChannelError(self.name, problem, retryable=False)
        register_secret_url(url)  # the user's receiver: client spans must not show its path
        body = orjson.dumps({"event": ALERT_EVENT, "sentAt": datetime.now(UTC).isoformat(), **as_json(alert)})
        headers = {
            "Content-Type": "application/json",
            H_SIGNATURE: sign(self._secret, body),
            H_EVENT_ID: str(alert.id),
            H_EVENT_TYPE: ALERT_EVENT,
        }
        try:
            async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                if response.status < 300:
                    return
                retryable = response.status in (408, 429) or response.status >= 500
                raise ChannelError(self.name, f"webhook answered HTTP {response.status}", retryable=retryable)
        except aiohttp.ClientError as exc:
            raise ChannelError(self.name, f"{type(exc).__name__}: {exc}", retryable=True) from exc


class UserEmailChannel(Channel):
    """E-mails the alert (SES) to the address the user set."""

    name = CHANNEL_USER_EMAIL

    def __init__(self, client: Any, sender: str, store: CostStore) -> None:
        self._email = EmailChannel(client, sender, [])
        self._store = store

    async def send(self, alert: Alert) -> None:
        address = (await _destination(self.name, self._store, alert)).email
        if not address:
            raise ChannelError(self.name, "the user removed their e-mail address", retryable=False)
        await self._email.send_to(alert, [address], channel=self.name)


async def _destination(channel: str, store: CostStore, alert: Alert) -> AlertDestination:
    found = None if alert.scope_user_id is None else await store.destination(alert.scope_user_id)
    if found is None:
        raise ChannelError(channel, "the alert's user has no destination", retryable=False)
    return found


@contextlib.contextmanager
def _aws_errors(channel: str) -> Iterator[None]:
    try:
        yield
    except NoCredentialsError as exc:
        raise ChannelError(channel, "no AWS credentials", retryable=False) from exc
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        code = error.get("Code", "")
        retryable = code in _AWS_RETRYABLE_CODES or status == 429 or status >= 500
        raise ChannelError(
            channel, f"{code or 'error'} (HTTP {status}): {error.get('Message', '')}", retryable=retryable
        ) from exc
    except BotoCoreError as exc:  # connection failures, timeouts
        raise ChannelError(channel, f"{type(exc).__name__}: {exc}", retryable=True) from exc


def configured_channels(settings: CostTrackerSettings) -> frozenset[str]:
    """The channels `settings` configure (a threshold naming another one has it skipped)."""
    names = {CHANNEL_USER_WEBHOOK} if settings.webhook_secret is not None else set()
    if settings.slack_webhook_url is not None:
        names.add(CHANNEL_SLACK)
    if settings.cost_alerts_sns_topic:
        names.add(CHANNEL_SNS)
    if settings.ses_from_email and settings.alert_recipients():
        names.add(CHANNEL_EMAIL)
    if settings.ses_from_email:
        names.add(CHANNEL_USER_EMAIL)
    return frozenset(names)


class Channels(Mapping[str, Channel]):
    """The configured channels, and the clients they hold open (from `open` to `close`)."""

    def __init__(self) -> None:
        self._channels: dict[str, Channel] = {}
        self._stack = contextlib.AsyncExitStack()

    async def open(self, settings: CostTrackerSettings, store: CostStore) -> None:
        wanted = configured_channels(settings)
        timeout = settings.cost_alert_channel_timeout_s
        try:
            if wanted & {CHANNEL_SLACK, CHANNEL_USER_WEBHOOK}:
                session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))
                self._stack.push_async_callback(session.close)
            if settings.slack_webhook_url is not None:
                webhook_url = settings.slack_webhook_url.get_secret_value()
                register_secret_url(webhook_url)  # a secret: client spans must not show it
                self._add(SlackChannel(session, webhook_url))
            if settings.webhook_secret is not None:
                secret = settings.webhook_secret.get_secret_value().encode()
                local = settings.webhook_allow_local_http
                self._add(UserWebhookChannel(session, store, secret, allow_local_http=local))
            if wanted & {CHANNEL_SNS, CHANNEL_EMAIL, CHANNEL_USER_EMAIL}:
                ses = bool(wanted & {CHANNEL_EMAIL, CHANNEL_USER_EMAIL})
                aws = await self._aws_clients(settings, sns=CHANNEL_SNS in wanted, ses=ses)
                if CHANNEL_SNS in wanted:
                    self._add(SnsChannel(aws["sns"], settings.cost_alerts_sns_topic or ""))
                if CHANNEL_EMAIL in wanted:
                    self._add(EmailChannel(aws["ses"], settings.ses_from_email or "", settings.alert_recipients()))
                if CHANNEL_USER_EMAIL in wanted:
                    self._add(UserEmailChannel(aws["ses"], settings.ses_from_email or "", store))
        except BaseException:
            await self.close()
            raise

    async def _aws_clients(self, settings: CostTrackerSettings, *, sns: bool, ses: bool) -> dict[str, Any]:
        config = AioConfig(
            connect_timeout=settings.cost_alert_channel_timeout_s,
            read_timeout=settings.cost_alert_channel_timeout_s,
            retries={"max_attempts": 1},  # retries are ours (via the bus), with backoff over minutes
        )
        session = get_session()
        clients: dict[str, Any] = {}
        for service, wanted in (("sns", sns), ("ses", ses)):
            if wanted:
                clients[service] = await self._stack.enter_async_context(
                    session.create_client(
                        service,
                        region_name=settings.aws_region,
                        endpoint_url=settings.cost_alerts_aws_endpoint_url,
                        config=config,
                    )
                )
        return clients

    def _add(self, channel: Channel) -> None:
        self._channels[channel.name] = channel

    def add(self, channel: Channel) -> None:
        """Add (or replace) a channel — for tests and embedders with channels of their own."""
        self._add(channel)

    async def close(self) -> None:
        self._channels.clear()
        await self._stack.aclose()

    def __getitem__(self, name: str) -> Channel:
        return self._channels[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._channels)

    def __len__(self) -> int:
        return len(self._channels)
