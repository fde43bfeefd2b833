"""Completion webhooks: the router's sender POSTs signed summaries to a real HTTP receiver on 127.0.0.1,
retries over the memory bus, and dead-letters what will never be accepted."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from aiohttp import web
from pydantic import ValidationError
from structlog.testing import capture_logs

from contracts import Envelope
from contracts.enums import ErrorType, IntentType, WorkflowStatus
from contracts.messages import DeliveryCounts, ErrorInfo, WebhookRequested, WorkflowSummary
from contracts.routing import ROUTER
from libs.bus import DeadLetter, RedeliveryPolicy
from libs.bus.memory import MemoryBus
from libs.callbacks import signature_matches
from libs.runtime import Runtime
from services.router.config import RouterSettings
from services.router.service import create
from services.router.webhooks import WebhookSender
from tests.fixtures.waiting import eventually

SECRET = secrets.token_urlsafe(32)
FAST_REDELIVERY = RedeliveryPolicy(max_deliveries=5, base_s=0.01, cap_s=0.05)
QUIET_S = 0.3  # how long "nothing more happens" is watched for


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic()

    def json(self) -> dict[str, Any]:
        return orjson.loads(self.body)  # type: ignore[no-any-return]


@dataclass
class Receiver:
    """A webhook endpoint: records each POST; answers the scripted statuses first (the last one repeats
    while scripted), then 200."""

    base: str = ""
    received: list[Received] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    answer_headers: dict[str, str] = field(default_factory=dict)
    hang_first_s: float = 0.0

    @property
    def url(self) -> str:
        return f"{self.base}/hook?token=receiver-own-token"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(Received(dict(request.headers), await request.read(), time.monotonic()))
        if self.hang_first_s and len(self.received) == 1:
            await asyncio.sleep(self.hang_first_s)
        status = self.script.pop(0) if self.script else 200
        return web.Response(status=status, headers=self.answer_headers if status != 200 else None)

    async def elsewhere(self, request: web.Request) -> web.Response:
        raise AssertionError("a redirect was followed")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    endpoint = Receiver()
    app = web.Application()
    app.router.add_post("/hook", endpoint.handle)
    app.router.add_route("*", "/elsewhere", endpoint.elsewhere)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint.base = f"http://127.0.0.1:{port}"
    yield endpoint
    await runner.cleanup()


def webhook_settings(**overrides: object) -> RouterSettings:
    values: dict[str, object] = {
        "database_url": None,
        "webhook_secret": SECRET,
        "webhook_allow_local_http": True,
        "webhook_timeout_s": 2.0,
        "webhook_max_attempts": 4,
        "webhook_retry_base_s": 0.02,
    }
    values.update(overrides)
    return RouterSettings(**values)  # type: ignore[arg-type]


def summary(status: WorkflowStatus = WorkflowStatus.COMPLETED) -> WorkflowSummary:
    now = datetime.now(UTC)
    failed = status is WorkflowStatus.FAILED
    return WorkflowSummary(
        workflow_id=uuid.uuid4(),
        user_id="creator-1",
        status=status,
        intent_type=IntentType.CAMPAIGN_EXECUTION,
        deliveries=DeliveryCounts(total=3, sent=2, failed=1),
        error=ErrorInfo(type=ErrorType.ONLYFANS_API_ERROR, message="one fan refused", retryable=False)
        if failed
        else None,
        trace_id="ab" * 16,
        created_at=now - timedelta(hours=2),
        completed_at=now,
    )


@dataclass
class Sending:
    """A WebhookSender subscribed as the router on a memory bus, and what it dead-lettered."""

    bus: MemoryBus
    dead: list[DeadLetter] = field(default_factory=list)

    async def request(self, url: str, status: WorkflowStatus = WorkflowStatus.COMPLETED) -> WebhookRequested:
        event = "workflow.completed" if status is WorkflowStatus.COMPLETED else "workflow.failed"
        request = WebhookRequested(url=url, event_id=uuid.uuid4(), event=event, summary=summary(status))
        await self.bus.publish(Envelope.new(request, workflow_id=request.summary.workflow_id, user_id="creator-1"))
        return request

    async def dead_letter(self) -> DeadLetter:
        async def arrived() -> bool:
            self.dead += await self.bus.dead_letters(ROUTER)
            return bool(self.dead)

        await eventually(arrived)
        return self.dead[0]

    async def no_dead_letters(self) -> bool:
        self.dead += await self.bus.dead_letters(ROUTER)
        return not self.dead


@contextlib.asynccontextmanager
async def sending(**overrides: object) -> AsyncIterator[Sending]:
    bus = MemoryBus(policy=FAST_REDELIVERY)
    await bus.connect()
    sender = WebhookSender(bus, webhook_settings(**overrides))
    await sender.start()
    await bus.subscribe(ROUTER, sender.handlers())
    try:
        yield Sending(bus)
    finally:
        await bus.close(grace_s=1.0)
        await sender.close()


async def posts(receiver: Receiver, count: int) -> None:
    async def enough() -> bool:
        return len(receiver.received) >= count

    await eventually(enough)


class TestSignedBody:
    async def test_signature_verifies_with_the_secret(self, receiver: Receiver) -> None:
        """X-Signature is sha256=<hex HMAC-SHA256 of the exact body bytes> under WEBHOOK_SECRET, and no
        other key verifies it."""
        async with sending() as s:
            await s.request(receiver.url)
            await posts(receiver, 1)
        got = receiver.received[0]
        signature = got.headers["X-Signature"]
        expected = "sha256=" + hmac.new(SECRET.encode(), got.body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(signature, expected)
        assert signature_matches(SECRET.encode(), got.body, signature)
        assert not signature_matches(secrets.token_bytes(32), got.body, signature)
        assert not signature_matches(SECRET.encode(), got.body + b" ", signature)

    async def test_body_is_the_summary_in_camel_case_with_the_event(self, receiver: Receiver) -> None:
        """The body is the summary's fields in camelCase plus eventId, event and sentAt; the headers repeat
        the event id and type."""
        async with sending() as s:
            request = await s.request(receiver.url, WorkflowStatus.FAILED)
            await posts(receiver, 1)
        got = receiver.received[0]
        body = got.json()
        assert body["eventId"] == str(request.event_id) == got.headers["X-Event-Id"]
        assert body["event"] == "workflow.failed" == got.headers["X-Event-Type"]
        assert got.headers["Content-Type"] == "application/json"
        assert body["workflowId"] == str(request.summary.workflow_id)
        assert (body["userId"], body["status"], body["intentType"]) == ("creator-1", "failed", "campaign_execution")
        assert body["deliveries"] == {"total": 3, "sent": 2, "failed": 1, "cancelled": 0}
        assert body["error"]["type"] == "onlyfans_api_error" and body["error"]["retryAfterS"] is None
        assert body["traceId"] == "ab" * 16
        assert datetime.fromisoformat(body["completedAt"]) == request.summary.completed_at
        assert abs(datetime.fromisoformat(body["sentAt"]) - datetime.now(UTC)) < timedelta(seconds=10)


class TestRetries:
    @pytest.mark.parametrize("status", [500, 502, 503, 408, 429])
    async def test_retried_until_accepted(self, receiver: Receiver, status: int) -> None:
        """5xx, 408 and 429 are retried: the third POST is accepted and nothing is dead-lettered."""
        receiver.script = [status, status]
        async with sending() as s:
            await s.request(receiver.url)
            await posts(receiver, 3)
            await asyncio.sleep(QUIET_S)
            assert await s.no_dead_letters()
        assert len(receiver.received) == 3

    async def test_event_id_stable_across_retries(self, receiver: Receiver) -> None:
        """Every retry carries the same event id (header and body), and each one's own signature verifies."""
        receiver.script = [500, 503]
        async with sending() as s:
            request = await s.request(receiver.url)
            await posts(receiver, 3)
        ids = {(got.headers["X-Event-Id"], got.json()["eventId"]) for got in receiver.received}
        assert ids == {(str(request.event_id), str(request.event_id))}
        key = SECRET.encode()
        assert all(signature_matches(key, got.body, got.headers["X-Signature"]) for got in receiver.received)

    async def test_a_receiver_that_does_not_answer_in_time_is_retried(self, receiver: Receiver) -> None:
        """A POST that gets no answer within WEBHOOK_TIMEOUT_S counts as failed and is retried."""
        receiver.hang_first_s = 1.0
        async with sending(webhook_timeout_s=0.2) as s:
            await s.request(receiver.url)
            await posts(receiver, 2)
            await asyncio.sleep(QUIET_S)
            assert await s.no_dead_letters()

    async def test_retry_after_is_honoured(self, receiver: Receiver) -> None:
        """A 429's Retry-After longer than the backoff sets the delay before the next POST."""
        receiver.script = [429]
        receiver.answer_headers = {"Retry-After": "0.5"}
        async with sending() as s:
            await s.request(receiver.url)
            await posts(receiver, 2)
        first, second = receiver.received
        assert second.at - first.at >= 0.45

    async def test_dead_letter_after_max_attempts_with_its_reason(self, receiver: Receiver) -> None:
        """WEBHOOK_MAX_ATTEMPTS failed POSTs, then the dead-letter queue with the last reason; no more POSTs."""
        receiver.script = [500] * 10
        async with sending(webhook_max_attempts=3) as s:
            await s.request(receiver.url)
            dead = await s.dead_letter()
            await asyncio.sleep(QUIET_S)
        assert len(receiver.received) == 3
        assert "gave up after 3 attempts" in dead.reason and "receiver answered 500" in dead.reason

    async def test_an_unreachable_receiver_is_retried_then_dead_lettered(self, receiver: Receiver) -> None:
        """A refused connection is retried like a 5xx; the reason names the error's type, not the address."""
        closed = Receiver(base="http://127.0.0.1:9")  # the discard port: nothing listens there
        async with sending(webhook_max_attempts=2) as s:
            await s.request(closed.url)
            dead = await s.dead_letter()
        assert "gave up after 2 attempts, last: connection failed" in dead.reason
        assert "127.0.0.1" not in dead.reason


class TestPermanentFailures:
    async def test_a_400_dead_letters_at_once(self, receiver: Receiver) -> None:
        """A 4xx other than 408/429 will never succeed: one POST, then the dead-letter queue with the status."""
        receiver.script = [400]
        async with sending() as s:
            await s.request(receiver.url)
            dead = await s.dead_letter()
            await asyncio.sleep(QUIET_S)
        assert len(receiver.received) == 1
        assert "permanent failure on attempt 1: receiver answered 400" in dead.reason

    async def test_a_redirect_is_not_followed(self, receiver: Receiver) -> None:
        """A 307 to another address is not followed (its target was never checked): dead-lettered at once."""
        receiver.script = [307]
        receiver.answer_headers = {"Location": f"{receiver.base}/elsewhere"}
        async with sending() as s:
            await s.request(receiver.url)
            dead = await s.dead_letter()
        assert len(receiver.received) == 1
        assert "redirects are not followed" in dead.reason


class TestRefusals:
    async def test_an_http_url_to_another_host_is_refused(self) -> None:
        """http:// to anything but localhost is dead-lettered unsent, even where local http is allowed."""
        async with sending(webhook_allow_local_http=True) as s:
            await s.request("http://hooks.example.com/done")
            dead = await s.dead_letter()
        assert "callback URL refused: the callback URL must use https" in dead.reason

    async def test_local_http_is_refused_unless_allowed(self, receiver: Receiver) -> None:
        """Without WEBHOOK_ALLOW_LOCAL_HTTP even a receiver on 127.0.0.1 over http gets nothing."""
        async with sending(webhook_allow_local_http=False) as s:
            await s.request(receiver.url)
            dead = await s.dead_letter()
            await asyncio.sleep(QUIET_S)
        assert receiver.received == []
        assert dead.reason.startswith("rejected: callback URL refused")

    async def test_without_a_secret_nothing_is_sent(self, receiver: Receiver) -> None:
        """No WEBHOOK_SECRET: the webhook is dead-lettered with the reason, never POSTed unsigned."""
        async with sending(webhook_secret=None) as s:
            await s.request(receiver.url)
            dead = await s.dead_letter()
            await asyncio.sleep(QUIET_S)
        assert receiver.received == []
        assert "WEBHOOK_SECRET is not set" in dead.reason


class TestLogs:
    async def test_logs_hold_neither_secret_nor_body_nor_url(self, receiver: Receiver) -> None:
        """The send and its retry are logged with the event id and host only: no secret, body, URL or token."""
        receiver.script = [500]
        with capture_logs() as logs:
            async with sending() as s:
                request = await s.request(receiver.url)
                await posts(receiver, 2)
                await asyncio.sleep(QUIET_S)
        text = repr(logs)
        events = [entry["event"] for entry in logs]
        assert events.count("webhook.post") == 2 and "webhook.retry_scheduled" in events
        assert str(request.event_id) in text
        for leaked in (SECRET, "receiver-own-token", "/hook", receiver.received[0].headers["X-Signature"], "ab" * 16):
            assert leaked not in text


class TestSettings:
    def test_a_short_secret_stops_the_start(self) -> None:
        """A WEBHOOK_SECRET under 32 bytes is a configuration error, not a weak signature."""
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            webhook_settings(webhook_secret="too-short")

    def test_an_empty_secret_means_unset(self) -> None:
        """WEBHOOK_SECRET= (empty) is the same as not setting it."""
        assert webhook_settings(webhook_secret="").webhook_secret is None

    def test_defaults_are_https_only(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """By default only https callback URLs are accepted, and the secret is not made up."""
        for name in ("WEBHOOK_ALLOW_LOCAL_HTTP", "WEBHOOK_SECRET"):  # the embedded mode sets both
            monkeypatch.delenv(name, raising=False)
        defaults = RouterSettings(database_url=None)
        assert defaults.webhook_allow_local_http is False and defaults.webhook_secret is None


class TestService:
    async def test_the_router_service_sends_webhooks(self, receiver: Receiver) -> None:
        """The router service consumes webhook.requested next to its own handlers, and sends them."""
        bus = MemoryBus(policy=FAST_REDELIVERY)
        await bus.connect()
        runtime = Runtime(bus=bus, settings=webhook_settings())
        service = await create(runtime)
        assert WebhookRequested.TYPE in service.handlers
        await service.start(runtime)
        try:
            await Sending(bus).request(receiver.url)
            await posts(receiver, 1)
        finally:
            await bus.close(grace_s=1.0)
            await service.stop()
