"""A campaign as the router handles it, on the memory bus and each store: the shared text fanned out in chunks
(a duplicated chunk re-publishes, never recomputes), delivery pages for the owner and admins only, and one
completion webhook with the counts. A fake sender (subscribed as the rate-limiter) answers the deliveries."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from contracts import Envelope, Message
from contracts.enums import DeliveryState, ErrorType, IntentType, Provider, WorkflowStatus
from contracts.messages import (
    DeliveryCompleted,
    DeliveryCounts,
    DeliveryFailed,
    DeliveryListQuery,
    DeliveryListReply,
    DeliveryRequested,
    ErrorInfo,
    GenerationCompleted,
    Intent,
    Recipient,
    WebhookRequested,
    WorkflowCompleted,
    WorkflowFanout,
)
from contracts.routing import RATE_LIMITER, ROUTER
from libs.runtime import Runtime
from services.router.constants import FANOUT_CHUNK
from services.router.delivery import fanout_id
from services.router.service import build_router
from tests.fixtures.waiting import eventually
from tests.router.harness import WAIT_S, Harness, fail, ok

D = DeliveryState
CALLBACK = "https://hooks.example.com/campaigns?token=abc"


def campaign(fans: int, prefix: str = "fan") -> Intent:
    recipients = [f"{prefix}-{i}" for i in range(fans)]
    return Intent(
        type=IntentType.CAMPAIGN_EXECUTION, data={"prompt": "hi"}, send_to_onlyfans=True, recipient_ids=recipients
    )


async def delivering(harness: Harness, intent: Intent, **kwargs: object) -> uuid.UUID:
    """Request a campaign; its id once every delivery was requested."""
    accepted = await harness.request(intent, **kwargs)  # type: ignore[arg-type]
    assert accepted.accepted and accepted.workflow is not None, accepted.error
    workflow_id = accepted.workflow.workflow_id
    total = len(intent.recipient_ids)

    async def all_requested() -> bool:
        return len({e.id for e in harness.bus.of_type(DeliveryRequested, workflow_id)}) >= total

    await eventually(all_requested, timeout=WAIT_S)
    return workflow_id


async def answer_deliveries(
    harness: Harness, refuse: Callable[[str], bool] = lambda fan: False, skip: Callable[[str], bool] = lambda fan: False
) -> None:
    """Stand in for rate-limiter and of-sender: every delivery.requested is answered sent (or refused, or
    never answered: skipped)."""

    async def send(envelope: Envelope) -> None:
        request = envelope.payload
        assert isinstance(request, DeliveryRequested)
        if skip(request.recipient_id):
            return
        report: DeliveryCompleted | DeliveryFailed
        if refuse(request.recipient_id):
            error = ErrorInfo(type=ErrorType.ONLYFANS_API_ERROR, message="platform said 400", retryable=False)
            report = DeliveryFailed(delivery_id=request.delivery_id, recipient_id=request.recipient_id, error=error)
        else:
            report = DeliveryCompleted(
                delivery_id=request.delivery_id,
                recipient_id=request.recipient_id,
                platform_message_id=f"msg-{request.recipient_id}",
                sent_at=envelope.occurred_at,
            )
        await harness.bus.publish(envelope.child(report))

    await harness.bus.subscribe(RATE_LIMITER, {DeliveryRequested.TYPE: send})


async def page(harness: Harness, query: DeliveryListQuery) -> DeliveryListReply:
    reply = await harness.bus.request(Envelope.new(query, user_id=query.requester_user_id), timeout=WAIT_S)
    assert isinstance(reply.payload, DeliveryListReply)
    return reply.payload


class TestFanout:
    async def test_the_shared_text_is_requested_in_chunks(self, harness: Harness) -> None:
        """Two and a half chunks of fans: one workflow.fanout per chunk under its derived id, each chunk's
        deliveries requested by its own message, every fan exactly once."""
        fans = 2 * FANOUT_CHUNK + 50
        await answer_deliveries(harness)  # the second chunk waits until the first's deliveries finish
        workflow_id = await delivering(harness, campaign(fans))
        fanouts = list({f.id: f for f in harness.bus.of_type(WorkflowFanout, workflow_id)}.values())
        starts = [0, FANOUT_CHUNK, 2 * FANOUT_CHUNK]
        assert [f.payload.from_seq for f in fanouts] == starts  # type: ignore[attr-defined]
        assert [f.id for f in fanouts] == [fanout_id(workflow_id, start) for start in starts]
        requested = harness.bus.of_type(DeliveryRequested, workflow_id)
        per_chunk = Counter(e.causation_id for e in requested)
        assert [per_chunk[f.id] for f in fanouts] == [FANOUT_CHUNK, FANOUT_CHUNK, 50]
        fans_reached = Counter(e.payload.recipient_id for e in requested)  # type: ignore[attr-defined]
        assert fans_reached == Counter(f"fan-{i}" for i in range(fans))

    async def test_a_duplicated_chunk_publishes_nothing_new(self, harness: Harness) -> None:
        """The first chunk's workflow.fanout delivered again: what it published is re-published as recorded
        (same envelope ids, so downstream de-duplication holds) — no delivery gets a second request id."""
        fans = FANOUT_CHUNK + 20
        await answer_deliveries(harness)  # the second chunk waits for the first's deliveries
        workflow_id = await delivering(harness, campaign(fans))
        before = harness.bus.of_type(DeliveryRequested, workflow_id)
        first_chunk = harness.bus.of_type(WorkflowFanout, workflow_id)[0]
        await harness.bus.publish(first_chunk)

        async def republished() -> bool:
            return len(harness.bus.of_type(DeliveryRequested, workflow_id)) >= 2 * fans

        await eventually(republished)
        after = harness.bus.of_type(DeliveryRequested, workflow_id)
        assert {e.id for e in after} == {e.id for e in before}
        ids_per_delivery = Counter(e.payload.delivery_id for e in {e.id: e for e in after}.values())  # type: ignore[attr-defined]
        assert set(ids_per_delivery.values()) == {1} and len(ids_per_delivery) == fans
        assert len({f.id for f in harness.bus.of_type(WorkflowFanout, workflow_id)}) == 2


class TestFanoutPacing:
    async def test_a_campaign_requests_no_more_than_it_is_ahead(self, harness: Harness) -> None:
        """Nobody answers the deliveries: the fan-out stops after the first chunk, its next chunk's message
        coming back with growing waits instead of requesting more. Once answered, the rest follows and every
        fan is requested exactly once."""
        fans = 5 * FANOUT_CHUNK
        accepted = await harness.request(campaign(fans))
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        waiting = fanout_id(workflow_id, FANOUT_CHUNK)

        def attempts() -> list[int]:
            return [f.attempt for f in harness.bus.of_type(WorkflowFanout, workflow_id) if f.id == waiting]

        async def came_back_twice() -> bool:
            return len(attempts()) >= 3

        await eventually(came_back_twice, timeout=WAIT_S)
        assert attempts()[:3] == [1, 2, 3]
        assert len(harness.bus.of_type(DeliveryRequested, workflow_id)) == FANOUT_CHUNK

        await answer_deliveries(harness)
        for request in harness.bus.of_type(DeliveryRequested, workflow_id):  # those requested before anyone answered
            await harness.bus.publish(request)
        await harness.sink.wait(workflow_id, timeout=WAIT_S)
        requested = {e.id: e for e in harness.bus.of_type(DeliveryRequested, workflow_id)}.values()
        reached = Counter(e.payload.recipient_id for e in requested)  # type: ignore[attr-defined]
        assert reached == Counter(f"fan-{i}" for i in range(fans))


class TestDeliveryList:
    async def test_pages_for_the_owner_and_an_admin_only(self, harness: Harness) -> None:
        """delivery.list.query: keyset pages in campaign order with a next cursor, the same for an admin;
        another user (or an unknown workflow) is told nothing was found."""
        workflow_id = await delivering(harness, campaign(5), user="owner")
        pages: list[list[str]] = []
        cursor: int | None = None
        while True:
            reply = await page(harness, DeliveryListQuery(workflow_id=workflow_id, requester_user_id="owner",
                                                          after_seq=cursor, limit=2))  # fmt: skip
            assert reply.found
            pages.append([d.recipient_id for d in reply.deliveries])
            cursor = reply.next_cursor
            if cursor is None:
                break
        assert pages == [["fan-0", "fan-1"], ["fan-2", "fan-3"], ["fan-4"]]
        admin = await page(
            harness, DeliveryListQuery(workflow_id=workflow_id, requester_user_id="root", requester_is_admin=True)
        )
        assert admin.found and [d.seq for d in admin.deliveries] == [0, 1, 2, 3, 4] and admin.next_cursor is None
        stranger = await page(harness, DeliveryListQuery(workflow_id=workflow_id, requester_user_id="someone"))
        assert (stranger.found, stranger.deliveries) == (False, [])
        unknown = await page(harness, DeliveryListQuery(workflow_id=uuid.uuid4(), requester_user_id="owner"))
        assert not unknown.found

    async def test_a_status_filter_pages_only_those_deliveries(self, harness: Harness) -> None:
        """With a status only the deliveries in it are listed (here: the refused ones), still paged."""
        await answer_deliveries(harness, refuse=lambda fan: fan in {"fan-1", "fan-3", "fan-4"})
        accepted = await harness.request(campaign(6), user="owner")
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        await harness.sink.wait(workflow_id)
        query = DeliveryListQuery(workflow_id=workflow_id, requester_user_id="owner", status=D.FAILED, limit=2)
        first = await page(harness, query)
        rest = await page(harness, query.model_copy(update={"after_seq": first.next_cursor}))
        assert [d.recipient_id for d in first.deliveries] == ["fan-1", "fan-3"] and first.next_cursor == 3
        assert [d.recipient_id for d in rest.deliveries] == ["fan-4"] and rest.next_cursor is None
        assert all(d.status is D.FAILED and d.error is not None for d in first.deliveries + rest.deliveries)


class TestCompletionWebhook:
    async def test_one_webhook_with_the_counts_when_a_campaign_ends(self, harness: Harness) -> None:
        """A campaign with a callback URL, one delivery refused: exactly one webhook.requested, completed,
        with {total, sent, failed, cancelled} and the error saying how many failed."""
        await answer_deliveries(harness, refuse=lambda fan: fan == "fan-2")
        accepted = await harness.request(campaign(4), callback_url=CALLBACK)
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        await harness.sink.wait(workflow_id)
        await asyncio.sleep(0.2)  # a second one, if any, would be published by now
        [webhook] = harness.bus.of_type(WebhookRequested, workflow_id)
        request = webhook.payload
        assert isinstance(request, WebhookRequested)
        assert (request.url, request.event, request.summary.status) == (
            CALLBACK,
            "workflow.completed",
            WorkflowStatus.COMPLETED,
        )
        assert request.summary.deliveries == DeliveryCounts(total=4, sent=3, failed=1, cancelled=0)
        assert request.summary.error is not None and "1 of 4 deliveries failed" in request.summary.error.message

    async def test_a_failed_workflow_sends_one_failed_webhook(self, harness: Harness) -> None:
        """A generation that cannot succeed: one webhook.requested, workflow.failed, with the error."""
        for provider in Provider:
            harness.workers.script(provider, fail(ErrorType.INVALID_REQUEST, retryable=False))
        intent = Intent(type=IntentType.MESSAGE_GENERATION, data={"prompt": "hi"})
        accepted = await harness.request(intent, callback_url=CALLBACK)
        assert accepted.workflow is not None
        await harness.sink.wait(accepted.workflow.workflow_id)
        await asyncio.sleep(0.2)
        [webhook] = harness.bus.of_type(WebhookRequested, accepted.workflow.workflow_id)
        request = webhook.payload
        assert isinstance(request, WebhookRequested)
        assert (request.event, request.summary.status, request.summary.deliveries) == (
            "workflow.failed",
            WorkflowStatus.FAILED,
            None,
        )
        assert request.summary.error is not None and request.summary.error.type is ErrorType.INVALID_REQUEST

    async def test_no_webhook_without_a_callback_url(self, harness: Harness) -> None:
        """Without a callback URL nothing is requested."""
        await answer_deliveries(harness)
        accepted = await harness.request(campaign(2))
        assert accepted.workflow is not None
        await harness.sink.wait(accepted.workflow.workflow_id)
        assert harness.bus.of_type(WebhookRequested) == []


# Short deadlines: the deadline ends these campaigns (some deliveries or texts never finish).
SHORT = {"router_workflow_deadline_s": 2.0, "router_delivery_grace_s": 0.3}


class TestDeadline:
    @pytest.mark.parametrize("settings_overrides", [SHORT])
    async def test_a_delivering_campaign_ends_by_its_counts(self, harness: Harness) -> None:
        """Two of four deliveries are sent, two never answered: at the deadline the open ones fail with the
        reason, the campaign completes (messages went out) with {4, 2, 2, 0} in its terminal message and its
        webhook; a send reported afterwards still moves the counts, not the status."""
        unanswered = {"fan-2", "fan-3"}
        await answer_deliveries(harness, refuse=lambda fan: False, skip=lambda fan: fan in unanswered)
        accepted = await harness.request(campaign(4), callback_url=CALLBACK)
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        ended = await harness.sink.wait(workflow_id)
        assert isinstance(ended.payload, WorkflowCompleted)
        assert ended.payload.deliveries == DeliveryCounts(total=4, sent=2, failed=2, cancelled=0)
        view = await harness.view(workflow_id)
        assert view.status is WorkflowStatus.COMPLETED
        assert view.error is not None and view.error.message == "2 of 4 deliveries failed"
        closed = [d for d in view.deliveries if d.status is D.FAILED]
        assert [d.recipient_id for d in closed] == ["fan-2", "fan-3"]
        reason = "deadline passed while delivering: 2 of 4 deliveries unfinished"
        assert all(d.error is not None and d.error.message.startswith(reason) for d in closed)
        [webhook] = harness.bus.of_type(WebhookRequested, workflow_id)
        assert webhook.payload.summary.deliveries == DeliveryCounts(total=4, sent=2, failed=2)  # type: ignore[attr-defined]
        late = DeliveryCompleted(delivery_id=closed[0].delivery_id, recipient_id="fan-2", platform_message_id="m",
                                 sent_at=ended.occurred_at)  # fmt: skip
        await harness.bus.publish(Envelope.new(late, workflow_id=workflow_id, user_id="user-1"))

        async def counted() -> bool:
            progress = (await harness.view(workflow_id)).progress
            return progress is not None and (progress.sent, progress.failed) == (3, 1)

        await eventually(counted)
        assert (await harness.view(workflow_id)).status is WorkflowStatus.COMPLETED

    @pytest.mark.parametrize("settings_overrides", [SHORT])
    async def test_a_personalized_campaign_stuck_generating_ends_by_its_counts(self, harness: Harness) -> None:
        """Texts for four fans are written and sent, the other eight never come back: at the deadline the
        campaign (still generating) completes by its counts, the unwritten texts' deliveries failed."""
        await answer_deliveries(harness)
        written = {f"fan-{i}" for i in range(4)}

        def answer(request: Envelope) -> Message | None:
            return ok()(request) if request.payload.recipient_id in written else None  # type: ignore[attr-defined]

        for provider in Provider:
            harness.workers.script(provider, answer)
        fans = tuple(Recipient(id=f"fan-{i}") for i in range(12))
        intent = campaign(0).model_copy(update={"data": {"prompt": "hi", "personalize": True}})
        accepted = await harness.request(intent, recipients=fans)
        assert accepted.workflow is not None
        ended = await harness.sink.wait(accepted.workflow.workflow_id)
        assert isinstance(ended.payload, WorkflowCompleted)
        assert ended.payload.deliveries == DeliveryCounts(total=12, sent=4, failed=8, cancelled=0)
        view = await harness.view(accepted.workflow.workflow_id)
        assert view.error is not None and view.error.message == "8 of 12 deliveries failed"
        assert {d.recipient_id for d in view.deliveries if d.status is D.SENT} == written
        reason = "deadline passed while generating: 8 of 12 deliveries unfinished"
        closed = [d for d in view.deliveries if d.status is D.FAILED]
        assert len(closed) == 8 and all(d.error is not None and d.error.message.startswith(reason) for d in closed)
        events = [e.name for e in await harness.store.history(accepted.workflow.workflow_id)]
        assert events[-3:] == ["texts_generated", "delivery_requested", "completed"]

    @pytest.mark.parametrize("settings_overrides", [SHORT])
    async def test_texts_push_the_deadline_by_its_length_on_any_replica(self, harness: Harness) -> None:
        """Two router replicas share the store, so most texts are handled from the stored workflow (whose
        deadline earlier texts already pushed on): each text still moves the deadline to its own time plus
        the workflow's deadline length, never compounding — a stuck campaign ends that long after its last
        text."""
        settings = harness.router.engine.settings
        replica = build_router(Runtime(bus=harness.bus, settings=settings), settings, harness.store)
        await harness.bus.subscribe(ROUTER, replica.handlers())
        for provider in Provider:
            harness.workers.script(provider, ok(after_s=0.05))
        fans = tuple(Recipient(id=f"fan-{i}") for i in range(40))
        intent = campaign(0).model_copy(update={"data": {"prompt": "hi", "personalize": True}})
        accepted = await harness.request(intent, recipients=fans)
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        ended = await harness.sink.wait(workflow_id)  # nobody sends the deliveries: the deadline ends it
        texts = harness.bus.of_type(GenerationCompleted, workflow_id)
        assert len(texts) == len(fans)
        last_text_at = max(e.occurred_at for e in texts)
        stored = await harness.store.get(workflow_id)
        assert stored is not None and stored.status is WorkflowStatus.FAILED, ended
        assert stored.error is not None and "40 of 40 deliveries unfinished" in stored.error.message
        overshoot = (stored.deadline_at - last_text_at).total_seconds() - settings.router_workflow_deadline_s
        assert overshoot < 0.5, f"the deadline was {overshoot:.2f}s further than the last text plus its length"
