"""Creator accounts, cancel and retry through the HTTP API, with the real router (memory store) behind the
gateway: who may send from an account, cancel's 200 / 403 / 404 / 409, retry's 202 / 409, each answer as the
OpenAPI document says."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from contracts import Envelope
from contracts.enums import ErrorType, Provider
from contracts.messages import DeliveryRequested
from contracts.routing import RATE_LIMITER, ROUTER
from libs.runtime import Runtime
from services.gateway import make_token
from services.router.service import build_router
from services.router.store import MemoryStore
from tests.fixtures.waiting import eventually
from tests.gateway.conftest import ALICE, BOB, SECRET, Answer, Harness, MakeGateway
from tests.router.harness import FakeWorkers, RecordingBus, fail, hang, ok, router_settings

CANCEL, RETRY = "/api/v2/campaigns/cancel", "/api/v2/campaigns/retry"
CAMPAIGN_BODY = {"type": "campaign_execution", "data": {"prompt": "hi"}, "sendToOnlyFans": True}


class Stack:
    """A gateway in front of a real router; the rate-limiter's queue swallows delivery requests (nothing is
    ever sent, so campaigns stay delivering until cancelled)."""

    def __init__(self, gw: Harness, workers: FakeWorkers, bus: RecordingBus) -> None:
        self.gw, self.workers, self.bus = gw, workers, bus

    async def call(self, method: str, path: str, *, token: str, **kwargs: Any) -> Answer:
        return await self.gw.client.call(method, path, token=token, **kwargs)

    async def start(self, body: dict[str, Any], token: str) -> str:
        answer = await self.call("POST", "/api/v2/campaigns/hybrid", token=token, json=body)
        assert answer.status == 202, answer.body
        return str(answer.body["data"]["workflowId"])

    async def delivering(self, body: dict[str, Any], token: str) -> str:
        workflow_id = await self.start(body, token)

        async def requested() -> bool:
            return any(str(e.workflow_id) == workflow_id for e in self.bus.of_type(DeliveryRequested))

        await eventually(requested, timeout=5)
        return workflow_id

    async def status(self, workflow_id: str, token: str) -> str:
        answer = await self.call("GET", "/api/v2/campaigns/status", token=token, params={"workflowId": workflow_id})
        return str(answer.body["data"]["status"])


def token(user: str, *, accounts: list[str] | None = None, admin: bool = False) -> str:
    return make_token(SECRET, user, role="admin" if admin else None, accounts=accounts)


@pytest.fixture
async def stack(make_gateway: MakeGateway) -> Stack:
    bus = RecordingBus()
    gw = await make_gateway(bus=bus, router=False)
    settings = router_settings()
    router = build_router(Runtime(bus=bus, settings=settings), settings, MemoryStore())
    await bus.subscribe(ROUTER, router.handlers())
    workers = FakeWorkers(bus)
    await workers.start()

    async def swallow(_: Envelope) -> None:
        return None

    await bus.subscribe(RATE_LIMITER, {DeliveryRequested.TYPE: swallow})
    return Stack(gw, workers, bus)


class TestAccounts:
    async def test_an_account_in_the_token_sends_from_that_account(self, stack: Stack) -> None:
        """accountId named by the `accounts` claim: accepted, and the deliveries are sent from that account."""
        body = {**CAMPAIGN_BODY, "recipientIds": ["fan-1"], "accountId": "creator-7"}
        workflow_id = await stack.delivering(body, token(BOB, accounts=["creator-7", "creator-8"]))
        [request] = [e for e in stack.bus.of_type(DeliveryRequested) if str(e.workflow_id) == workflow_id]
        assert isinstance(request.payload, DeliveryRequested) and request.payload.account_id == "creator-7"
        answer = await stack.call(
            "GET", "/api/v2/campaigns/status", token=token(BOB), params={"workflowId": workflow_id}
        )
        assert answer.body["data"]["accountId"] == "creator-7"

    @pytest.mark.parametrize("accounts", [None, ["creator-8"]])
    async def test_an_account_not_in_the_token_answers_403(self, stack: Stack, accounts: list[str] | None) -> None:
        """accountId neither the sub nor in `accounts`: 403 forbidden, and nothing reaches the router."""
        body = {**CAMPAIGN_BODY, "recipientIds": ["fan-1"], "accountId": "creator-7"}
        answer = await stack.call("POST", "/api/v2/campaigns/hybrid", token=token(BOB, accounts=accounts), json=body)
        assert (answer.status, answer.body["error"]["code"]) == (403, "forbidden")

    async def test_an_admin_may_send_from_any_account_and_a_bad_id_is_400(self, stack: Stack) -> None:
        """An admin's token needs no claim; an accountId outside the platform id pattern is a 400."""
        body = {**CAMPAIGN_BODY, "recipientIds": ["fan-1"], "accountId": "creator-7"}
        await stack.start(body, token("root", admin=True))
        bad = {**body, "accountId": "../admin"}
        answer = await stack.call("POST", "/api/v2/campaigns/hybrid", token=token("root", admin=True), json=bad)
        assert (answer.status, answer.body["error"]["code"]) == (400, "validation_error")


class TestCancel:
    async def test_cancel_answers_the_cancelled_workflow_then_409(self, stack: Stack) -> None:
        """A delivering campaign: 200 with status cancelled and sentBefore 0; the second cancel answers 409."""
        workflow_id = await stack.delivering({**CAMPAIGN_BODY, "recipientIds": ["fan-1", "fan-2"]}, token(ALICE))
        answer = await stack.call("POST", CANCEL, token=token(ALICE), params={"workflowId": workflow_id})
        assert answer.status == 200
        assert answer.body["data"]["sentBefore"] == 0
        assert answer.body["data"]["workflow"]["status"] == "cancelled"
        assert answer.body["data"]["workflow"]["progress"]["cancelled"] == 2
        assert await stack.status(workflow_id, token(ALICE)) == "cancelled"
        again = await stack.call("POST", CANCEL, token=token(ALICE), params={"workflowId": workflow_id})
        assert (again.status, again.body["error"]["code"]) == (409, "already_finished")

    async def test_unknown_foreign_and_malformed(self, stack: Stack) -> None:
        """Unknown: 404; another user's: 403; a user of its account may; a malformed id: 400."""
        stack.workers.script(Provider.AZURE, hang())
        stack.workers.script(Provider.OPENAI, hang())
        body = {"type": "message_generation", "data": {"prompt": "hi"}, "accountId": "creator-7"}
        workflow_id = await stack.start(body, token(ALICE, accounts=["creator-7"]))
        unknown = await stack.call("POST", CANCEL, token=token(ALICE), params={"workflowId": str(uuid.uuid4())})
        assert (unknown.status, unknown.body["error"]["code"]) == (404, "not_found")
        foreign = await stack.call("POST", CANCEL, token=token(BOB), params={"workflowId": workflow_id})
        assert (foreign.status, foreign.body["error"]["code"]) == (403, "forbidden")
        malformed = await stack.call("POST", CANCEL, token=token(ALICE), params={"workflowId": "nope"})
        assert (malformed.status, malformed.body["error"]["code"]) == (400, "invalid_parameter")
        staff = await stack.call(
            "POST", CANCEL, token=token(BOB, accounts=["creator-7"]), params={"workflowId": workflow_id}
        )
        assert staff.status == 200 and staff.body["data"]["workflow"]["status"] == "cancelled"

    async def test_wait_true_on_a_workflow_cancelled_meanwhile_answers_409(self, stack: Stack) -> None:
        """A client waiting for the result of a workflow that gets cancelled: 409 cancelled, not a 5xx."""
        stack.workers.script(Provider.AZURE, hang())
        stack.workers.script(Provider.OPENAI, hang())
        body = {"type": "message_generation", "data": {"prompt": "hi"}}
        waiting = asyncio.create_task(
            stack.call("POST", "/api/v2/campaigns/hybrid", token=token(ALICE), json=body, params={"wait": "true"})
        )

        async def generating() -> bool:
            return any(e.type == "generation.requested" for e in stack.bus.published)

        await eventually(generating, timeout=5)
        workflow_id = str(next(e.workflow_id for e in stack.bus.published if e.type == "generation.requested"))
        assert (await stack.call("POST", CANCEL, token=token(ALICE), params={"workflowId": workflow_id})).status == 200
        answer = await waiting
        assert (answer.status, answer.body["error"]["code"]) == (409, "cancelled")


class TestRetry:
    async def test_a_failed_workflow_is_retried_as_a_new_one(self, stack: Stack) -> None:
        """202 with a new workflowId, retryOf the failed one and a Location; the new one completes."""
        for provider in Provider:
            stack.workers.script(provider, fail(ErrorType.INVALID_REQUEST, retryable=False))
        failed_id = await stack.start({"type": "message_generation", "data": {"prompt": "hi"}}, token(ALICE))

        async def failed() -> bool:
            return await stack.status(failed_id, token(ALICE)) == "failed"

        await eventually(failed, timeout=5)
        for provider in Provider:
            stack.workers.script(provider, ok())
        answer = await stack.call("POST", RETRY, token=token(ALICE), params={"workflowId": failed_id})
        assert answer.status == 202 and answer.body["data"]["retryOf"] == failed_id
        new_id = answer.body["data"]["workflowId"]
        assert new_id != failed_id and answer.headers["Location"].endswith(new_id)

        async def completed() -> bool:
            return await stack.status(new_id, token(ALICE)) == "completed"

        await eventually(completed, timeout=5)
        again = await stack.call("POST", RETRY, token=token(ALICE), params={"workflowId": new_id})
        assert (again.status, again.body["error"]["code"]) == (409, "not_failed")
        foreign = await stack.call("POST", RETRY, token=token(BOB), params={"workflowId": failed_id})
        assert foreign.status == 403
