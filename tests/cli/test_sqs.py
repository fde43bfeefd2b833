"""`ho sqs provision|sweep` on moto's SQS server: every queue and DLQ created; only stale reply queues deleted."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from libs.bus.sqs_config import REPLY_HEARTBEAT_TAG, REPLY_STALE_S, SqsSettings
from libs.bus.sqs_provision import consuming_services, destroy, list_queues, queue_names, reply_prefix, sqs_client
from tests.cli.conftest import ho

pytestmark = pytest.mark.integration


@pytest.fixture
def namespace() -> str:
    return f"cli{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bus_url(sqs_endpoint: str, monkeypatch: pytest.MonkeyPatch, namespace: str) -> str:
    url = f"sqs://?region=us-east-1&endpoint_url={sqs_endpoint}&namespace={namespace}"
    monkeypatch.setenv("BUS_URL", url)
    return url


@pytest.fixture
async def sqs(bus_url: str, namespace: str) -> AsyncIterator[Any]:
    """A plain SQS client on moto; the namespace's queues are deleted afterwards."""
    async with sqs_client(SqsSettings.from_url(bus_url)) as client:
        yield client
        await destroy(client, namespace)


def answer(out: str) -> Any:
    """The JSON object `ho sqs` prints (the last lines: in-process, logs may come first)."""
    return json.loads(out[out.rindex("\n{") + 1 :] if "\n{" in out else out)


class TestSqs:
    async def test_provision_creates_every_queue_and_dlq(
        self, sqs: Any, namespace: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`ho sqs provision` creates each consuming service's queue and dead-letter queue, and says which."""
        ran = await asyncio.to_thread(ho, capsys, "sqs", "provision")
        assert ran.code == 0, ran
        printed = answer(ran.out)
        names = {url.rsplit("/", 1)[-1] for url in await list_queues(sqs, namespace)}
        for service in consuming_services():
            queue, dlq = queue_names(namespace, service)
            assert {queue, dlq} <= names
            assert printed["queues"][service].endswith("/" + queue)
            assert printed["deadLetterQueues"][service].endswith("/" + dlq)

    async def test_sweep_deletes_only_stale_reply_queues(
        self, sqs: Any, namespace: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A reply queue its process stopped stamping (killed) is deleted; one stamped recently stays."""
        prefix = reply_prefix(namespace)
        stamps = {"killed": time.time() - REPLY_STALE_S - 60, "alive": time.time()}
        urls = {}
        for name, stamp in stamps.items():
            created = await sqs.create_queue(QueueName=prefix + name, tags={REPLY_HEARTBEAT_TAG: str(stamp)})
            urls[name] = created["QueueUrl"]
        ran = await asyncio.to_thread(ho, capsys, "sqs", "sweep")
        assert ran.code == 0, ran
        assert answer(ran.out) == {"namespace": namespace, "deletedReplyQueues": [urls["killed"]]}
        assert await list_queues(sqs, prefix) == [urls["alive"]]

    def test_not_an_sqs_bus(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        """BUS_URL naming another transport: one line naming BUS_URL, exit 2."""
        monkeypatch.setenv("BUS_URL", "amqp://guest:guest@127.0.0.1:5672/")
        ran = ho(capsys, "sqs", "provision")
        assert (ran.code, ran.err) == (2, "ho: BUS_URL: must be an sqs:// URL for `ho sqs` (or give --bus-url)\n")

    def test_unreachable_endpoint_is_one_line(self, capsys: pytest.CaptureFixture[str]) -> None:
        """An SQS endpoint that does not answer: exit 1, one line."""
        ran = ho(capsys, "sqs", "sweep", "--bus-url", "sqs://?region=us-east-1&endpoint_url=http://127.0.0.1:1")
        assert ran.code == 1 and len(ran.err.splitlines()) == 1 and ran.err.startswith("ho: SQS sweep failed")
