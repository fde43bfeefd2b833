"""Alert delivery: Slack (a local webhook receiver), SNS and SES (moto's server) — once per crossing, retried
when a channel fails, and never in the way of accounting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiobotocore.session import get_session
from aiohttp import web
from botocore.exceptions import ClientError
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from contracts.enums import CostPeriod
from contracts.routing import COST_TRACKER
from libs.bus.memory import MemoryBus
from libs.telemetry.instrumentation import instrument_libraries, uninstrument_libraries
from services.cost_tracker.channels import SnsChannel
from services.cost_tracker.errors import ChannelError
from services.cost_tracker.model import Alert, Severity
from services.cost_tracker.pg_store import PostgresStore
from services.cost_tracker.store import CostStore
from tests.cost_tracker.conftest import (
    ADMIN,
    ALICE,
    FAST,
    Clock,
    Harness,
    eventually,
    start_harness,
    tracker_settings,
    usage,
)

NOON = datetime(2026, 5, 20, 12, tzinfo=UTC)
REGION = "us-east-1"
SENDER, RECIPIENT = "alerts@example.com", "ops@example.com"


@dataclass
class SlackReceiver:
    """A Slack incoming webhook: records each POST; answers the scripted statuses first, then 200."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    hang_s: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(orjson.loads(await request.read()))
        if self.hang_s:
            await asyncio.sleep(self.hang_s)
        status = self.script.pop(0) if self.script else 200
        return web.Response(status=status, text="ok" if status == 200 else "no")


@pytest.fixture
async def slack() -> AsyncIterator[SlackReceiver]:
    receiver = SlackReceiver()
    app = web.Application()
    app.router.add_post("/hook", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}/hook"
    yield receiver
    await runner.cleanup()


@dataclass
class Aws:
    endpoint: str
    topic_arn: str
    queue_url: str
    client: Any  # sqs
    ses: Any

    async def sns_messages(self) -> list[dict[str, Any]]:
        """What the topic delivered to its SQS subscriber (each SNS publish is one message)."""
        found = []
        while True:
            answer = await self.client.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            messages = answer.get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(orjson.loads(message["Body"]))
                await self.client.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    emails_before: int = 0

    async def emails_sent(self) -> int:
        """Emails SES sent since this fixture began (moto's server counts for the whole session)."""
        return int((await self.ses.get_send_quota())["SentLast24Hours"]) - self.emails_before


@pytest.fixture
async def aws(sqs_endpoint: str) -> AsyncIterator[Aws]:
    """A fresh SNS topic with an SQS queue subscribed to it, and a verified SES sender, on moto's server."""
    session = get_session()
    name = f"cost-alerts-{uuid.uuid4().hex[:8]}"
    async with (
        session.create_client("sns", region_name=REGION, endpoint_url=sqs_endpoint) as sns,
        session.create_client("sqs", region_name=REGION, endpoint_url=sqs_endpoint) as sqs,
        session.create_client("ses", region_name=REGION, endpoint_url=sqs_endpoint) as ses,
    ):
        topic = (await sns.create_topic(Name=name))["TopicArn"]
        queue_url = (await sqs.create_queue(QueueName=name))["QueueUrl"]
        queue_arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))["Attributes"][
            "QueueArn"
        ]
        await sns.subscribe(
            TopicArn=topic, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"}
        )
        await ses.verify_email_identity(EmailAddress=SENDER)
        found = Aws(sqs_endpoint, topic, queue_url, sqs, ses)
        found.emails_before = await found.emails_sent()
        yield found


async def alert_deliveries(harness: Harness) -> list[dict[str, Any]]:
    alerts = (await harness.data("alerts", {}, user=ADMIN))["alerts"]
    return [d for alert in alerts for d in alert["deliveries"]]


async def delivered(harness: Harness, *statuses: str) -> None:
    async def done() -> bool:
        deliveries = await alert_deliveries(harness)
        return bool(deliveries) and all(d["status"] in statuses for d in deliveries)

    await eventually(done)


def spend(dollars: str) -> Any:
    return usage(ALICE, prompt=int(Decimal(dollars) * 100_000), completion=0, at=NOON)


@pytest.mark.integration
class TestDeliveredOnce:
    async def test_a_crossing_sends_one_slack_message_one_sns_publish_and_one_email(
        self, store: CostStore, request: pytest.FixtureRequest, slack: SlackReceiver, aws: Aws
    ) -> None:
        """Two replicas, many messages over the threshold: Slack gets one message, the topic one publish, SES
        one email; a second crossing in the same period sends nothing more."""
        settings = tracker_settings(
            slack_webhook_url=slack.url,
            cost_alerts_sns_topic=aws.topic_arn,
            cost_alerts_aws_endpoint_url=aws.endpoint,
            ses_from_email=SENDER,
            cost_alert_email=RECIPIENT,
            aws_region=REGION,
        )
        bus = MemoryBus(policy=FAST)
        clock = Clock(NOON)
        second = store
        if isinstance(store, PostgresStore):  # a second replica: its own pool on the same schema
            second = PostgresStore(request.getfixturevalue("postgres_dsn"), schema=request.getfixturevalue("pg_schema"))
        one = await start_harness(store, settings, bus=bus, clock=clock)
        two = await start_harness(second, settings, bus=bus, clock=clock)
        try:
            await one.data(
                "thresholds", {"op": "create", "user_id": ALICE, "period": "daily", "limit_usd": "1"}, user=ADMIN
            )
            await asyncio.gather(*(h.record(spend("0.3")) for h in [one, two] * 4))
            await delivered(one, "sent")
            await one.record(spend("2"))
            await two.tracker.sweep()
            await asyncio.sleep(0.3)  # time for anything wrongly sent to arrive
            assert len(slack.received) == 1
            assert "alice" in slack.received[0]["text"] and "$1" in slack.received[0]["text"]
            [published] = await aws.sns_messages()
            assert (published["userId"], published["period"], Decimal(published["limitUsd"])) == (
                ALICE,
                "daily",
                Decimal(1),
            )
            assert await aws.emails_sent() == 1
        finally:
            await bus.close(grace_s=1)
            for harness in (one, two):
                await harness.tracker.stop()


class TestSpans:
    @pytest.fixture
    def settings_overrides(self, slack: SlackReceiver) -> dict[str, Any]:
        return {"slack_webhook_url": slack.url}

    @pytest.fixture
    def client_spans(self, spans: InMemorySpanExporter) -> Iterator[InMemorySpanExporter]:
        """The aiohttp client instrumented as a service process instruments it."""
        instrumented = instrument_libraries()
        yield spans
        uninstrument_libraries(instrumented)

    async def test_the_slack_webhook_url_never_appears_in_a_span(
        self, client_spans: InMemorySpanExporter, harness: Harness, slack: SlackReceiver
    ) -> None:
        """The webhook URL is a secret: the client span of the Slack POST records its path as REDACTED, and no
        attribute of any span holds the URL (it once was: `http.url`)."""
        harness.clock.at = NOON
        await harness.data(
            "thresholds",
            {"op": "create", "user_id": ALICE, "period": "daily", "limit_usd": "1", "notification_channels": ["slack"]},
            user=ADMIN,
        )
        await harness.record(spend("1"))
        await delivered(harness, "sent")
        posts = [s for s in client_spans.get_finished_spans() if s.kind is SpanKind.CLIENT and s.name == "POST"]
        assert posts, [s.name for s in client_spans.get_finished_spans()]
        host = slack.url.removesuffix("/hook")
        assert {(s.attributes or {}).get("http.url") or (s.attributes or {}).get("url.full") for s in posts} == {
            f"{host}/REDACTED"
        }
        leaked = [s.name for s in client_spans.get_finished_spans() if slack.url in str(dict(s.attributes or {}))]
        assert leaked == []


class TestRetries:
    @pytest.fixture
    def settings_overrides(self, slack: SlackReceiver) -> dict[str, Any]:
        return {"slack_webhook_url": slack.url, "cost_alert_max_attempts": 4, "cost_alert_channel_timeout_s": 0.3}

    async def test_a_failing_channel_is_retried_until_it_accepts(self, harness: Harness, slack: SlackReceiver) -> None:
        """503 and 429 are retried (via the bus, with backoff); the third attempt is accepted and the last."""
        slack.script = [503, 429]
        harness.clock.at = NOON
        await harness.data(
            "thresholds",
            {"op": "create", "user_id": ALICE, "period": "daily", "limit_usd": "1", "notification_channels": ["slack"]},
            user=ADMIN,
        )
        await harness.record(spend("1"))
        await delivered(harness, "sent")
        [delivery] = await alert_deliveries(harness)
        assert (delivery["attempts"], len(slack.received)) == (3, 3)
        await asyncio.sleep(0.3)
        assert len(slack.received) == 3

    async def test_a_refusing_channel_is_not_retried(self, harness: Harness, slack: SlackReceiver) -> None:
        """A 4xx (a revoked webhook) fails the delivery at once, with the reason; no retry."""
        slack.script = [404]
        harness.clock.at = NOON
        await harness.data(
            "thresholds", {"op": "create", "user_id": ALICE, "period": "daily", "limit_usd": "1"}, user=ADMIN
        )
        await harness.record(spend("1"))
        await delivered(harness, "failed", "skipped")
        deliveries = {d["channel"]: d for d in await alert_deliveries(harness)}
        assert deliveries["slack"]["attempts"] == 1 and "HTTP 404" in deliveries["slack"]["last_error"]
        assert (deliveries["sns"]["status"], deliveries["email"]["status"]) == ("skipped", "skipped")
        await asyncio.sleep(0.2)
        assert len(slack.received) == 1

    async def test_a_hanging_channel_never_blocks_accounting(self, harness: Harness, slack: SlackReceiver) -> None:
        """While Slack hangs past its timeout on every attempt, usage keeps being recorded and queries
        answered; after the last attempt the delivery is failed."""
        slack.hang_s = 0.6
        harness.clock.at = NOON
        await harness.data(
            "thresholds",
            {"op": "create", "user_id": ALICE, "period": "daily", "limit_usd": "1", "notification_channels": ["slack"]},
            user=ADMIN,
        )
        await harness.bus.publish(spend("1"))
        await eventually(lambda: _received(slack, 1))
        for _ in range(5):
            await harness.bus.publish(spend("0.1"))

        async def counted() -> bool:
            return (await harness.data("stats"))["requests"] == 6

        await eventually(counted, timeout=1.0)
        await delivered(harness, "failed")
        [delivery] = await alert_deliveries(harness)
        assert delivery["attempts"] == 4 and "no answer" in delivery["last_error"]
        assert harness.bus.depth(COST_TRACKER) == 0


async def _received(slack: SlackReceiver, n: int) -> bool:
    return len(slack.received) >= n


class TestClassification:
    async def test_aws_errors_are_classified_by_code_and_status(self) -> None:
        """Throttling and 5xx are retryable; an unknown topic (404 NotFound) is not."""

        class Failing:
            def __init__(self, code: str, status: int) -> None:
                self.error = ClientError(
                    {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}}, "Publish"
                )

            async def publish(self, **_: Any) -> None:
                raise self.error

        alert = Alert(
            id=uuid.uuid4(), kind="manual", threshold_id="manual:x", scope_user_id=None, period=CostPeriod.DAILY,
            period_start=NOON, spent_usd=Decimal(1), limit_usd=Decimal(1), severity=Severity.INFO,
            message="m", raised_at=NOON,
        )  # fmt: skip
        outcomes = {}
        for code, status in (("Throttling", 400), ("InternalError", 500), ("NotFound", 404)):
            with pytest.raises(ChannelError) as caught:
                await SnsChannel(Failing(code, status), "arn").send(alert)
            outcomes[code] = caught.value.retryable
        assert outcomes == {"Throttling": True, "InternalError": True, "NotFound": False}
