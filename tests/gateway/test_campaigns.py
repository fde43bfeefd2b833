"""POST /api/v2/campaigns/hybrid: acceptance, idempotency, waiting for the result, refusals, the kill switch."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from contracts import Envelope
from contracts.costs import CallCost, WorkflowCost, WorkflowCostQuery, WorkflowCostReply
from contracts.enums import ErrorType, IntentType, Priority, Provider, WorkflowStatus
from contracts.messages import (
    ErrorInfo,
    WorkflowAccepted,
    WorkflowRequested,
    WorkflowStatusQuery,
    WorkflowStatusReply,
    WorkflowView,
)
from contracts.routing import COST_TRACKER, ROUTER
from libs.bus import PublishError
from libs.bus.memory import MemoryBus
from services.gateway import constants as gateway_constants
from tests.gateway.conftest import ALICE, BOB, PLAN, STATUS, FakeRouter, Harness, MakeGateway

HEX32 = re.compile(r"^[0-9a-f]{32}$")


class FailingBus(MemoryBus):
    """A bus whose broker refuses every publish."""

    async def _send(self, *args: object, **kwargs: object) -> None:
        raise PublishError("broker did not confirm")


class TestAccepted:
    async def test_answers_202_with_workflow_id_status_and_trace_id(self, gw: Harness) -> None:
        """A valid intent answers 202 {success, data: {workflowId, status: accepted, traceId}} and a Location."""
        answer = await gw.client.post(PLAN)
        assert answer.status == 202
        assert answer.body["success"] is True
        data = answer.body["data"]
        assert set(data) == {"workflowId", "status", "traceId"}
        assert data["status"] == "accepted"
        assert HEX32.match(data["traceId"])
        assert answer.headers["Location"] == f"{STATUS}?workflowId={data['workflowId']}"

    async def test_publishes_one_workflow_requested_with_the_token_user(self, gw: Harness) -> None:
        """The router gets one workflow.requested: the camelCase intent in snake_case, the user from `sub`."""
        body = {
            "type": "message_generation",
            "data": {"fan": "x"},
            "contentType": "chat",
            "sendToOnlyFans": True,
            "recipientId": "fan-1",
            "recipientIds": ["fan-2"],
            "requiresMultiPlatform": True,
            "forceProvider": "openai",
            "priority": "critical",
        }
        answer = await gw.client.post(body, user=BOB)
        [envelope] = gw.router.requests
        assert isinstance(envelope.payload, WorkflowRequested)
        intent = envelope.payload.intent
        assert envelope.user_id == BOB
        assert str(envelope.workflow_id) == answer.body["data"]["workflowId"]
        assert envelope.payload.trace_id == answer.body["data"]["traceId"]
        assert envelope.payload.idempotency_key is None
        assert intent.type is IntentType.MESSAGE_GENERATION and intent.data == {"fan": "x"}
        assert (intent.content_type, intent.send_to_onlyfans, intent.recipient_id) == ("chat", True, "fan-1")
        assert intent.recipient_ids == ["fan-2"] and intent.requires_multi_platform
        assert intent.force_provider is Provider.OPENAI and intent.priority is Priority.CRITICAL

    async def test_status_right_after_202_finds_the_workflow(self, gw: Harness) -> None:
        """Read-your-writes: the status request made right after the 202 answers 200 for that workflow."""
        workflow_id = (await gw.client.post(PLAN)).body["data"]["workflowId"]
        answer = await gw.client.status(workflow_id)
        assert answer.status == 200
        assert answer.body["data"]["workflowId"] == workflow_id

    async def test_router_timeout_still_answers_202(self, make_gateway: MakeGateway) -> None:
        """When the router does not confirm in time the request stays queued: 202 accepted all the same."""
        gw = await make_gateway(router=False, gateway_request_timeout_s=0.2)
        answer = await gw.client.post(PLAN)
        assert answer.status == 202
        assert answer.body["data"]["status"] == "accepted"

    async def test_bus_failure_answers_503_unavailable(self, make_gateway: MakeGateway) -> None:
        """A publish the broker does not confirm answers 503 `unavailable` with Retry-After."""
        gw = await make_gateway(bus=FailingBus())
        answer = await gw.client.post(PLAN)
        assert answer.status == 503
        assert answer.body["error"]["code"] == "unavailable"
        assert answer.headers["Retry-After"] == "1"


class WrongReplyRouter:
    """A router that answers workflow.requested with something that is not a WorkflowAccepted."""

    async def on_requested(self, envelope: Envelope) -> WorkflowStatusReply:
        return WorkflowStatusReply(found=False)


class TestUnexpectedReplies:
    async def test_a_reply_of_the_wrong_type_answers_502(self, make_gateway: MakeGateway) -> None:
        """A router bug (a reply that is not WorkflowAccepted) answers 502 bad_gateway, not a crash."""
        bus = MemoryBus()
        await bus.subscribe(ROUTER, {WorkflowRequested.TYPE: WrongReplyRouter().on_requested})
        gw = await make_gateway(bus=bus, router=False)
        answer = await gw.client.post(PLAN)
        assert answer.status == 502 and answer.body["error"]["code"] == "bad_gateway"

    async def test_another_users_workflow_is_never_answered(self, make_gateway: MakeGateway) -> None:
        """If the router ever answers Alice's workflow to Bob, Bob gets 502, not her workflow or result."""
        alice = FakeRouter().add(ALICE, status=WorkflowStatus.COMPLETED)
        bus = MemoryBus()
        await bus.subscribe(ROUTER, {WorkflowRequested.TYPE: ForeignWorkflowRouter(alice).on_requested})
        gw = await make_gateway(bus=bus, router=False)
        answer = await gw.client.post(PLAN, user=BOB, params={"wait": "true"})
        assert answer.status == 502 and answer.body["error"]["code"] == "bad_gateway"
        assert str(alice.workflow_id) not in str(answer.body)


class ForeignWorkflowRouter:
    """A router that answers with a workflow of another user (a bug the gateway must not pass on)."""

    def __init__(self, view: WorkflowView) -> None:
        self.view = view

    async def on_requested(self, envelope: Envelope) -> WorkflowAccepted:
        return WorkflowAccepted(accepted=True, workflow=self.view)


class TestIdempotency:
    async def test_same_key_and_user_answer_the_same_workflow(self, gw: Harness) -> None:
        """A retried POST with the same Idempotency-Key gets the same workflowId; the router stores one."""
        first = await gw.client.post(PLAN, headers={"Idempotency-Key": "order-42"})
        second = await gw.client.post(PLAN, headers={"Idempotency-Key": "order-42"})
        assert first.body["data"]["workflowId"] == second.body["data"]["workflowId"]
        assert len(gw.router.workflows) == 1
        assert [e.payload.idempotency_key for e in gw.router.requests] == ["order-42", "order-42"]  # type: ignore[attr-defined]

    async def test_same_key_of_another_user_is_another_workflow(self, gw: Harness) -> None:
        """Keys are per user: Bob's "order-42" is not Alice's."""
        alice = await gw.client.post(PLAN, user=ALICE, headers={"Idempotency-Key": "order-42"})
        bob = await gw.client.post(PLAN, user=BOB, headers={"Idempotency-Key": "order-42"})
        assert alice.body["data"]["workflowId"] != bob.body["data"]["workflowId"]

    async def test_user_and_key_cannot_be_spliced(self, gw: Harness) -> None:
        """User "a:b" with key "c" and user "a" with key "b:c" are different workflows."""
        first = await gw.client.post(PLAN, user="a:b", headers={"Idempotency-Key": "c"})
        second = await gw.client.post(PLAN, user="a", headers={"Idempotency-Key": "b:c"})
        assert first.body["data"]["workflowId"] != second.body["data"]["workflowId"]

    async def test_without_a_key_every_post_is_a_new_workflow(self, gw: Harness) -> None:
        """No Idempotency-Key: two POSTs are two workflows."""
        first = await gw.client.post(PLAN)
        second = await gw.client.post(PLAN)
        assert first.body["data"]["workflowId"] != second.body["data"]["workflowId"]

    async def test_a_replay_answers_the_original_trace(self, gw: Harness) -> None:
        """The retry's answer carries the workflow's trace id (where its spans are), not the retry's."""
        first = await gw.client.post(PLAN, headers={"Idempotency-Key": "k"})
        second = await gw.client.post(PLAN, headers={"Idempotency-Key": "k"})
        assert second.body["data"]["traceId"] == first.body["data"]["traceId"]


async def ask_costs(gw: Harness, answer: Decimal = Decimal("0.009")) -> list[WorkflowCostQuery]:
    """A cost-tracker on the harness's bus answering every workflow cost query settled at `answer`; the
    queries it got."""
    asked: list[WorkflowCostQuery] = []

    async def on_query(envelope: Envelope) -> WorkflowCostReply:
        query = envelope.payload
        assert isinstance(query, WorkflowCostQuery)
        asked.append(query)
        cost = WorkflowCost(
            workflow_id=query.workflow_id, user_id=ALICE, workflow_type=None, status="completed", total_cost=answer,
            requests=1, prompt_tokens=1, completion_tokens=1, estimated_cost=Decimal(0), first_at=None,
            last_at=None, settled=True,
        )  # fmt: skip
        return WorkflowCostReply(data=cost)

    await gw.bus.subscribe(COST_TRACKER, {WorkflowCostQuery.TYPE: on_query})
    return asked


class TestWait:
    async def test_completed_answers_200_with_content_provider_and_metrics(self, gw: Harness) -> None:
        """?wait=true answers the original plan's shape once completed: data {workflowId, content, provider, status},
        metrics {duration ms, cost {tokens, cost}}."""
        gw.router.finish_after_s = 0.2
        answer = await gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 200
        assert answer.body["success"] is True
        data, metrics = answer.body["data"], answer.body["metrics"]
        uuid.UUID(data["workflowId"])
        assert data["content"] == "Mon: beach shoot. Tue: behind the scenes."
        assert (data["provider"], data["status"]) == ("openai", "completed")
        assert metrics == {"duration": 1234.0, "cost": {"tokens": 100, "cost": 0.001}}

    async def test_told_end_and_cost_answer_without_asking(self, gw: Harness) -> None:
        """A router that tells the end and a cost-tracker that tells a settled cost (Notify): ?wait=true answers
        200 with that cost, and neither a status query nor a cost query is sent."""
        asked = await ask_costs(gw)
        gw.router.finish_after_s, gw.router.told_cost = 0.1, Decimal("0.0042")
        answer = await gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 200
        assert answer.body["metrics"]["cost"] == {"tokens": 100, "cost": 0.0042}
        assert [type(e.payload) for e in gw.router.seen] == [WorkflowRequested]
        assert asked == []

    async def test_an_end_not_told_in_time_is_asked(self, gw: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
        """A router that answers `notifies` but whose tell never arrives: after TOLD_END_WAIT_S the gateway
        asks with held status queries, then the cost-tracker, and answers 200 with the result and that cost."""
        monkeypatch.setattr(gateway_constants, "TOLD_END_WAIT_S", 0.2)
        asked = await ask_costs(gw)
        gw.router.finish_after_s, gw.router.told_cost, gw.router.lose_tells = 0.1, Decimal("0.0042"), True
        answer = await gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 200
        assert answer.body["data"]["content"] == "Mon: beach shoot. Tue: behind the scenes."
        assert answer.body["metrics"]["cost"] == {"tokens": 100, "cost": 0.009}
        assert any(isinstance(e.payload, WorkflowStatusQuery) for e in gw.router.seen) and len(asked) == 1

    async def test_told_cost_not_settled_is_asked(self, gw: Harness) -> None:
        """Told the end, but a cost the cost-tracker has not settled yet: the gateway asks for the cost and
        answers the settled figure."""
        asked = await ask_costs(gw, answer=Decimal("0.005"))
        gw.router.finish_after_s, gw.router.told_cost, gw.router.cost_settled = 0.1, Decimal("0.001"), False
        answer = await gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 200
        assert answer.body["metrics"]["cost"] == {"tokens": 100, "cost": 0.005}
        assert len(asked) == 1 and not any(isinstance(e.payload, WorkflowStatusQuery) for e in gw.router.seen)

    @pytest.mark.parametrize(
        ("provider", "completion_tokens", "asks"),
        [(Provider.OPENAI, 60, False), (Provider.AZURE, 60, True), (Provider.OPENAI, 61, True)],
        ids=["includes-the-final-usage", "another-provider", "other-tokens"],
    )
    async def test_a_cost_told_at_the_final_usage_answers_when_it_includes_it(
        self, gw: Harness, provider: Provider, completion_tokens: int, asks: bool
    ) -> None:
        """A cost told when the text's usage was recorded (not settled: the cost-tracker did not know the end)
        answers when its calls include the usage the told end has (openai, 40 + 60 tokens); otherwise the
        gateway asks for the cost."""
        asked = await ask_costs(gw, answer=Decimal("0.005"))
        call = CallCost(
            provider=provider, model="gpt-4", prompt_tokens=40, completion_tokens=completion_tokens,
            cost=Decimal("0.0042"), tokens_estimated=False, price_estimated=False, price_entry="openai/gpt-4",
            occurred_at=datetime.now(UTC),
        )  # fmt: skip
        gw.router.finish_after_s, gw.router.told_cost = 0.1, Decimal("0.0042")
        gw.router.cost_settled, gw.router.cost_calls = False, [call]
        answer = await gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 200
        assert answer.body["metrics"]["cost"] == {"tokens": 100, "cost": 0.005 if asks else 0.0042}
        assert len(asked) == (1 if asks else 0)

    async def test_wait_that_runs_out_answers_202_with_the_current_status(self, gw: Harness) -> None:
        """When the workflow is not done within &timeout=, the answer is 202 with its current status."""
        gw.router.finish_after_s = 30
        answer = await gw.client.post(PLAN, params={"wait": "true", "timeout": "0.3"})
        assert answer.status == 202
        assert answer.body["data"]["status"] == "generating"

    async def test_wait_asks_the_router_to_hold_and_backs_off_when_it_does_not(self, gw: Harness) -> None:
        """The status queries of ?wait=true ask the router to hold (wait_s); a router that answers at once
        anyway (this fake, like a router older than wait_s) is asked again only after a growing pause."""
        gw.router.finish_after_s = 30
        answer = await gw.client.post(PLAN, params={"wait": "true", "timeout": "1"})
        assert answer.status == 202
        queries = [e.payload for e in gw.router.seen if isinstance(e.payload, WorkflowStatusQuery)]
        assert all(q.wait_s is not None and 0 < q.wait_s <= 1 for q in queries)
        assert 3 <= len(queries) <= 9  # pauses of 50, 75, 112, 169, 253 ms … within 1 s, not a busy loop

    async def test_replay_of_a_finished_workflow_answers_at_once(self, gw: Harness) -> None:
        """wait=true with the Idempotency-Key of a completed workflow answers its result without polling."""
        gw.router.finish_after_s = 0.0
        key = {"Idempotency-Key": "done"}
        first = await gw.client.post(PLAN, params={"wait": "true"}, headers=key)
        queries_before = len(gw.router.seen)
        second = await gw.client.post(PLAN, params={"wait": "true"}, headers=key)
        assert second.status == 200 and second.body == first.body
        assert len(gw.router.seen) == queries_before + 1  # the replayed request only, no status query

    async def test_timeout_is_capped_by_the_setting(self, make_gateway: MakeGateway) -> None:
        """&timeout= beyond GATEWAY_WAIT_TIMEOUT_S waits only as long as the setting."""
        gw = await make_gateway(gateway_wait_timeout_s=0.3)
        gw.router.finish_after_s = 30
        answer = await gw.client.post(PLAN, params={"wait": "1", "timeout": "3600"})
        assert answer.status == 202

    async def test_failed_workflow_answers_its_error_type(self, gw: Harness) -> None:
        """A workflow failed on azure_timeout answers 504, code azure_timeout, with its data and metrics."""
        gw.router.finish_after_s = 0.1
        gw.router.fail_with = ErrorInfo(type=ErrorType.AZURE_TIMEOUT, message="no answer in 45 s", retryable=True)
        answer = await gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 504
        assert answer.body["success"] is False
        assert answer.body["error"] == {"code": "azure_timeout", "message": "no answer in 45 s", "retryable": True}
        assert answer.body["data"]["status"] == "failed"

    async def test_provider_failure_answers_502(self, gw: Harness) -> None:
        """A workflow failed because the providers are down answers 502 provider_unavailable."""
        gw.router.finish_after_s = 0.1
        gw.router.fail_with = ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message="both down", retryable=True)
        answer = await gw.client.post(PLAN, params={"wait": "true"})
        assert answer.status == 502
        assert answer.body["error"]["code"] == "provider_unavailable"


class TestRefusals:
    async def test_cost_limit_answers_402(self, gw: Harness) -> None:
        """A budget that blocks the user answers 402 cost_limit_exceeded (the workflow was not created)."""
        gw.router.refuse_with = ErrorInfo(
            type=ErrorType.COST_LIMIT_EXCEEDED, message="daily budget of $5.00 spent", retryable=False
        )
        answer = await gw.client.post(PLAN)
        assert answer.status == 402
        assert answer.body["success"] is False
        assert answer.body["error"]["code"] == "cost_limit_exceeded"
        assert answer.body["error"]["message"] == "daily budget of $5.00 spent"

    @pytest.mark.parametrize(
        ("error_type", "status"),
        [
            (ErrorType.INVALID_REQUEST, 422),
            (ErrorType.COMPLIANCE_VIOLATION, 422),
            (ErrorType.RATE_LIMIT_EXCEEDED, 429),
            (ErrorType.PROVIDER_UNAVAILABLE, 502),
            (ErrorType.DATABASE_ERROR, 503),
            (ErrorType.OPENAI_TIMEOUT, 504),
        ],
    )
    async def test_refusals_answer_the_status_of_their_error_type(
        self, gw: Harness, error_type: ErrorType, status: int
    ) -> None:
        """Each ErrorType maps to its documented status; a retry_after becomes a Retry-After header."""
        gw.router.refuse_with = ErrorInfo(type=error_type, message="no", retryable=True, retry_after_s=2.4)
        answer = await gw.client.post(PLAN)
        assert answer.status == status
        assert answer.body["error"] == {"code": error_type.value, "message": "no", "retryable": True, "retryAfter": 2.4}
        assert answer.headers["Retry-After"] == "2"

    async def test_disabled_answers_503_and_publishes_nothing(self, make_gateway: MakeGateway) -> None:
        """HYBRID_ORCHESTRATOR_ENABLED=false: the POST answers 503 `disabled`; reads still work."""
        gw = await make_gateway(hybrid_orchestrator_enabled=False)
        view = gw.router.add(ALICE)
        answer = await gw.client.post(PLAN)
        assert answer.status == 503
        assert answer.body["error"]["code"] == "disabled"
        assert gw.router.requests == []
        assert (await gw.client.status(view.workflow_id)).status == 200
