"""The dead-letter admin API on a real bus (RabbitMQ): listing without taking, replay of one id or all, a
replay that fails again, and every refusal (401 / 403 / 400 / 404)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts import Envelope, Message
from contracts import messages as m
from contracts.routing import ROUTER
from libs.bus.amqp import AmqpBus
from libs.bus.errors import Reject
from tests.gateway.conftest import ALICE, Answer, Harness, MakeGateway

LIST = "/api/admin/dead-letters"
REPLAY = "/api/admin/dead-letters/replay"
ROOT = "root"


class Worker:
    """The router's handler of workflow.requested: rejects while `failing`, then accepts."""

    def __init__(self) -> None:
        self.failing = True
        self.seen: list[Envelope] = []

    async def __call__(self, envelope: Envelope) -> Message | None:
        self.seen.append(envelope)
        if self.failing:
            raise Reject(f"attempt {len(self.seen)}")
        return None


@pytest.fixture
async def amqp_bus(amqp_url: str) -> AsyncIterator[AmqpBus]:
    """An unconnected RabbitMQ bus on a namespace of its own; the namespace is deleted afterwards."""
    namespace = f"t{uuid.uuid4().hex[:10]}"
    yield AmqpBus(amqp_url, namespace=namespace)
    cleaner = AmqpBus(amqp_url, namespace=namespace)
    await cleaner.connect()
    await cleaner.destroy()
    await cleaner.close()


@pytest.fixture
async def gw(amqp_bus: AmqpBus, make_gateway: MakeGateway) -> AsyncIterator[Harness]:
    yield await make_gateway(bus=amqp_bus, router=False)


@pytest.fixture
async def worker(gw: Harness) -> Worker:
    handler = Worker()
    await gw.bus.subscribe(ROUTER, {"workflow.requested": handler})
    return handler


async def list_dead(gw: Harness, **params: str) -> Answer:
    return await gw.client.call("GET", LIST, user=ROOT, role="admin", params={"service": ROUTER, **params})


async def replay(gw: Harness, body: Any) -> Answer:
    return await gw.client.call("POST", REPLAY, user=ROOT, role="admin", json=body)


async def dead_count(gw: Harness, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The router's listed dead letters once there are `count`."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        answer = await list_dead(gw)
        assert answer.status == 200, answer.body
        items: list[dict[str, Any]] = answer.body["data"]["deadLetters"]
        if len(items) == count:
            return items
        assert asyncio.get_running_loop().time() < deadline, f"expected {count} dead letters, got {len(items)}"
        await asyncio.sleep(0.05)


async def publish_request(gw: Harness) -> Envelope:
    intent = m.Intent(type="message_generation", data={"text": "hi fan", "apiKey": "sk-1"})
    envelope = Envelope.new(m.WorkflowRequested(intent=intent), workflow_id=uuid.uuid4(), user_id=ALICE)
    await gw.bus.publish(envelope)
    return envelope


class TestAccess:
    @pytest.mark.parametrize(("method", "path"), [("GET", LIST), ("POST", REPLAY)])
    async def test_without_a_token_answers_401(self, gw: Harness, method: str, path: str) -> None:
        """No bearer token: 401 missing_token on both endpoints."""
        answer = await gw.client.call(method, path, user=None, params={"service": ROUTER}, json={"service": ROUTER})
        assert (answer.status, answer.body["error"]["code"]) == (401, "missing_token")

    async def test_a_non_admin_gets_403_and_replays_nothing(self, gw: Harness, worker: Worker) -> None:
        """A user token is refused on both endpoints, and its replay leaves the dead letter where it is."""
        await publish_request(gw)
        await dead_count(gw, 1)
        listing = await gw.client.call("GET", LIST, user=ALICE, params={"service": ROUTER})
        replaying = await gw.client.call("POST", REPLAY, user=ALICE, json={"service": ROUTER, "all": True})
        assert [(a.status, a.body["error"]["code"]) for a in (listing, replaying)] == [(403, "forbidden")] * 2
        await dead_count(gw, 1)
        assert len(worker.seen) == 1


class TestBadInput:
    @pytest.mark.parametrize("params", [{"service": "nope"}, {"service": ""}, {}])
    async def test_an_unknown_or_missing_service_answers_400_naming_the_services(
        self, gw: Harness, params: dict[str, str]
    ) -> None:
        """service must be a service with a queue; the message lists them."""
        answer = await gw.client.call("GET", LIST, user=ROOT, role="admin", params=params)
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")
        assert "router" in answer.body["error"]["message"] and "of-sender" in answer.body["error"]["message"]

    @pytest.mark.parametrize("limit", ["0", "1001", "x", "-1"])
    async def test_a_bad_limit_answers_400(self, gw: Harness, limit: str) -> None:
        """limit is a whole number from 1 to 1000."""
        answer = await list_dead(gw, limit=limit)
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")

    @pytest.mark.parametrize(
        "body",
        [
            {"service": ROUTER},
            {"service": ROUTER, "id": "x", "all": True},
            {"service": ROUTER, "all": False},
            {"service": ROUTER, "all": "yes"},
            {"id": "x"},
            {"service": ROUTER, "id": "x", "extra": 1},
        ],
    )
    async def test_a_replay_needs_a_service_and_either_an_id_or_all(self, gw: Harness, body: dict[str, Any]) -> None:
        """Neither or both of id and all, a missing service or an unknown field: 400 validation_error."""
        answer = await replay(gw, body)
        assert (answer.status, answer.body["error"]["code"]) == (400, "validation_error")

    async def test_replaying_an_unknown_service_answers_400(self, gw: Harness) -> None:
        """An unknown service in the body is refused like in the listing."""
        answer = await replay(gw, {"service": "nope", "all": True})
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")

    async def test_replaying_an_unknown_id_answers_404_and_changes_nothing(self, gw: Harness, worker: Worker) -> None:
        """An id not in the queue: 404 not_found; the dead letter there stays."""
        await publish_request(gw)
        await dead_count(gw, 1)
        answer = await replay(gw, {"service": ROUTER, "id": str(uuid.uuid4())})
        assert (answer.status, answer.body["error"]["code"]) == (404, "not_found")
        await dead_count(gw, 1)


class TestListAndReplay:
    async def test_the_listing_shows_what_and_why_redacted_and_leaves_it(self, gw: Harness, worker: Worker) -> None:
        """GET lists id, type, version, reason, time, age, workflow id and a redacted preview, twice alike."""
        sent = await publish_request(gw)
        (item,) = await dead_count(gw, 1)
        assert {k: item[k] for k in ("id", "type", "version", "reason", "workflowId", "replays")} == {
            "id": str(sent.id),
            "type": "workflow.requested",
            "version": 1,
            "reason": "rejected: attempt 1",
            "workflowId": str(sent.workflow_id),
            "replays": 0,
        }
        assert item["preview"]["intent"]["data"] == "[redacted]"
        assert "hi fan" not in str(item) and "sk-1" not in str(item)
        assert item["deadLetteredAt"] is not None and 0 <= item["ageS"] < 30
        again = await list_dead(gw)
        assert again.body["data"]["deadLetters"] == [{**item, "ageS": again.body["data"]["deadLetters"][0]["ageS"]}]
        assert again.body["data"]["depth"] == 1

    async def test_replay_by_id_hands_the_message_to_its_service_again(self, gw: Harness, worker: Worker) -> None:
        """Once the cause is fixed, replaying the id gets the message handled; the queue is empty after."""
        sent = await publish_request(gw)
        await dead_count(gw, 1)
        worker.failing = False
        answer = await replay(gw, {"service": ROUTER, "id": str(sent.id)})
        assert (answer.status, answer.body) == (200, {"success": True, "data": {"service": ROUTER, "replayed": 1}})
        await dead_count(gw, 0)
        assert [e.id for e in worker.seen] == [sent.id, sent.id]

    async def test_replay_all_that_fails_again_is_dead_lettered_again_with_its_new_reason(
        self, gw: Harness, worker: Worker
    ) -> None:
        """Replaying all of two still-failing messages answers 2; both come back once, with new reasons."""
        first, second = await publish_request(gw), await publish_request(gw)
        await dead_count(gw, 2)
        answer = await replay(gw, {"service": ROUTER, "all": True})
        assert answer.body["data"]["replayed"] == 2
        items = await dead_count(gw, 2)
        assert {i["id"] for i in items} == {str(first.id), str(second.id)}
        assert {i["reason"] for i in items} == {"rejected: attempt 3", "rejected: attempt 4"}
        assert [i["replays"] for i in items] == [1, 1]
        empty = await gw.client.call(
            "POST", REPLAY, user=ROOT, role="admin", json={"service": "of-sender", "all": True}
        )
        assert empty.body["data"]["replayed"] == 0
