"""GET /api/v2/campaigns/status: the whole workflow state in camelCase, only to its owner (or an admin)."""

from __future__ import annotations

import uuid

import pytest

from contracts.messages import WorkflowStatusQuery
from tests.gateway.conftest import ALICE, BOB, PLAN, STATUS, Harness, MakeGateway

VIEW_KEYS = {
    "workflowId", "userId", "status", "intentType", "priority", "currentProvider", "providerStates",
    "fallbackHistory", "retryAttempts", "result", "model", "usage", "cost", "error", "deliveries", "traceId",
    "createdAt", "updatedAt", "deadlineAt", "completedAt", "progress", "accountId", "retryOf", "routingPolicyId",
    "experimentId", "arm",
}  # fmt: skip


class TestStatus:
    async def test_answers_the_whole_state_in_camel_case(self, gw: Harness) -> None:
        """A completed workflow's status has every field of the view, nested objects camelCased too."""
        gw.router.finish_after_s = 0.0
        workflow_id = (await gw.client.post(PLAN, params={"wait": "true"})).body["data"]["workflowId"]
        answer = await gw.client.status(workflow_id)
        assert answer.status == 200 and answer.body["success"] is True
        data = answer.body["data"]
        assert set(data) == VIEW_KEYS
        assert data["workflowId"] == workflow_id and data["userId"] == ALICE
        assert (data["status"], data["intentType"], data["priority"]) == ("completed", "content_planning", "high")
        assert data["providerStates"] == {
            "azure": "timeout",
            "openai": "completed",
            "rateLimiter": "pending",
            "onlyFans": "pending",
        }
        assert data["retryAttempts"] == {"azure": 1, "openai": 0, "onlyFans": 0}
        [fallback] = data["fallbackHistory"]
        assert (fallback["from"], fallback["to"], fallback["reason"]) == ("azure", "openai", "azure_timeout")
        assert data["usage"] == {"promptTokens": 40, "completionTokens": 60, "totalTokens": 100, "estimated": False}
        assert data["cost"] == 0.001
        assert data["completedAt"] is not None and data["error"] is None

    async def test_query_carries_the_requester(self, gw: Harness) -> None:
        """The router is asked with the requester's id and admin flag, so it can filter too."""
        view = gw.router.add(ALICE)
        await gw.client.status(view.workflow_id, user=BOB, role="admin")
        [query] = [e.payload for e in gw.router.seen if isinstance(e.payload, WorkflowStatusQuery)]
        assert (query.workflow_id, query.requester_user_id, query.requester_is_admin) == (view.workflow_id, BOB, True)


class TestVisibility:
    async def test_unknown_workflow_answers_404(self, gw: Harness) -> None:
        """A workflow id nobody created answers 404."""
        answer = await gw.client.status(uuid.uuid4())
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found"

    async def test_another_users_workflow_answers_404(self, gw: Harness) -> None:
        """Bob asking for Alice's workflow gets the same 404 as for a missing one (even if the router answers)."""
        view = gw.router.add(ALICE)
        answer = await gw.client.status(view.workflow_id, user=BOB)
        assert answer.status == 404 and answer.body["error"]["code"] == "not_found"

    async def test_admin_sees_any_workflow(self, gw: Harness) -> None:
        """A token with role admin reads anyone's workflow."""
        view = gw.router.add(ALICE)
        answer = await gw.client.status(view.workflow_id, user=BOB, role="admin")
        assert answer.status == 200 and answer.body["data"]["userId"] == ALICE

    async def test_other_roles_are_not_admin(self, gw: Harness) -> None:
        """role: editor grants nothing."""
        view = gw.router.add(ALICE)
        assert (await gw.client.status(view.workflow_id, user=BOB, role="editor")).status == 404

    async def test_idempotency_keys_do_not_cross_users(self, gw: Harness) -> None:
        """Bob reusing Alice's Idempotency-Key gets his own workflow; hers stays hidden from him."""
        alice = await gw.client.post(PLAN, user=ALICE, headers={"Idempotency-Key": "same"})
        bob = await gw.client.post(PLAN, user=BOB, headers={"Idempotency-Key": "same"})
        assert (await gw.client.status(bob.body["data"]["workflowId"], user=BOB)).body["data"]["userId"] == BOB
        assert (await gw.client.status(alice.body["data"]["workflowId"], user=BOB)).status == 404


class TestBadRequests:
    @pytest.mark.parametrize("params", [{}, {"workflowId": ""}, {"workflowId": "not-a-uuid"}, {"workflowId": "1234"}])
    async def test_missing_or_invalid_id_answers_400(self, gw: Harness, params: dict[str, str]) -> None:
        """workflowId is required and must be a UUID; nothing is asked of the router."""
        answer = await gw.client.call("GET", STATUS, params=params)
        assert answer.status == 400 and answer.body["error"]["code"] == "invalid_parameter"
        assert gw.router.seen == []

    async def test_missing_token_answers_401(self, gw: Harness) -> None:
        """Status needs a token too."""
        answer = await gw.client.status(uuid.uuid4(), user=None)
        assert answer.status == 401 and answer.body["error"]["code"] == "missing_token"
        assert gw.router.seen == []

    async def test_router_not_answering_is_503(self, make_gateway: MakeGateway) -> None:
        """No reply within GATEWAY_REQUEST_TIMEOUT_S: 503 unavailable, not a hang."""
        gw = await make_gateway(router=False, gateway_request_timeout_s=0.2)
        answer = await gw.client.status(uuid.uuid4())
        assert answer.status == 503 and answer.body["error"]["code"] == "unavailable"
