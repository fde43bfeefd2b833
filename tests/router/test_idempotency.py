"""Redelivery, duplicates, crashes between commit and publish, superseded results, the deadline and the
status query — on the memory bus, against each store."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime

import pytest

from contracts import Envelope
from contracts.enums import ErrorType, IntentType, Provider, ProviderState, WorkflowStatus
from contracts.messages import GenerationCompleted, Intent, Usage, WorkflowCompleted, WorkflowFailed, WorkflowTimer
from libs.bus import DeadLetter, PublishError, Unroutable
from libs.bus.base import current_service
from libs.runtime import Runtime
from services.router.constants import STATUS_WAIT_RECHECK_S
from services.router.pg_store import PostgresStore
from services.router.service import build_router
from services.router.state import Change, Workflow
from services.router.store import Loaded
from tests.fixtures.waiting import eventually
from tests.router.harness import Harness, fail, hang, intent, ok


def fail_router_publish_once(harness: Harness, message_type: str) -> list[Envelope]:
    """Make the router's first publish of `message_type` raise, as if it died right after its commit;
    returns the list the failed envelopes are appended to."""
    publish, failed = harness.bus.publish, list[Envelope]()

    async def flaky(envelope: Envelope, *, delay: float = 0.0) -> None:
        if current_service.get() == "router" and envelope.type == message_type and not failed:
            failed.append(envelope)
            raise PublishError("broker connection lost (simulated)")
        await publish(envelope, delay=delay)

    harness.bus.publish = flaky  # type: ignore[method-assign]
    return failed


class TestDuplicates:
    async def test_duplicate_request_gives_one_workflow(self, harness: Harness) -> None:
        """A second workflow.requested for the same workflow id returns the existing workflow."""
        workflow_id = uuid.uuid4()
        harness.workers.script(Provider.OPENAI, ok(after_s=0.2))
        first = await harness.request(intent(), workflow_id=workflow_id)
        second = await harness.request(intent(), workflow_id=workflow_id)
        assert first.accepted and second.accepted
        assert first.workflow is not None and second.workflow is not None
        assert second.workflow.workflow_id == workflow_id and second.workflow.created_at == first.workflow.created_at
        await harness.sink.wait(workflow_id)
        assert len(harness.workers.calls[Provider.OPENAI]) == 1
        history = await harness.store.history(workflow_id)
        assert [e.name for e in history].count("accepted") == 1

    async def test_same_workflow_id_from_another_user_is_refused(self, harness: Harness) -> None:
        """A request reusing another user's workflow id is refused and sees nothing of it."""
        workflow_id = uuid.uuid4()
        await harness.request(intent(), workflow_id=workflow_id, user="owner")
        other = await harness.request(intent(), workflow_id=workflow_id, user="intruder")
        assert not other.accepted and other.workflow is None

    @pytest.mark.parametrize("user", ["*", "", "al ice"])
    async def test_a_user_id_that_is_no_user_is_refused(self, harness: Harness, user: str) -> None:
        """A user called "*" would be the global budget scope: the workflow is refused, never stored."""
        workflow_id = uuid.uuid4()
        refused = await harness.request(intent(), workflow_id=workflow_id, user=user)
        assert not refused.accepted and refused.error is not None
        assert refused.error.type is ErrorType.INVALID_REQUEST
        assert await harness.store.get(workflow_id) is None

    async def test_a_workflow_the_database_refuses_is_refused_not_lost(self, harness: Harness) -> None:
        """A workflow whose data PostgreSQL cannot store (a NUL in `data`) is answered "refused" at once —
        not retried, dead-lettered and lost after the gateway's 202."""
        if not isinstance(harness.store, PostgresStore):
            pytest.skip("the memory store stores anything")
        workflow_id = uuid.uuid4()
        answer = await harness.request(
            Intent(type=IntentType.MESSAGE_GENERATION, data={"prompt": "a\x00b"}), workflow_id=workflow_id
        )
        assert not answer.accepted and answer.error is not None and answer.error.type is ErrorType.INVALID_REQUEST
        assert "cannot be stored" in answer.error.message
        assert await harness.bus.dead_letters("router") == []

    async def test_redelivered_completion_moves_nothing(self, harness: Harness) -> None:
        """A generation.completed delivered twice completes the workflow once; the second delivery only
        re-publishes the same workflow.completed (same envelope id)."""
        view, _ = await harness.run(intent())
        answer = next(iter(harness.workers.answered.values()))
        before = await harness.store.get(view.workflow_id)
        harness.router._terminal.clear()  # as on another replica, which has not seen the workflow finish
        await harness.bus.publish(answer)
        await eventually(lambda: _count(harness, view.workflow_id, 2))
        after = await harness.store.get(view.workflow_id)
        assert before is not None and after is not None and after.version == before.version
        first, second = harness.sink.finished[view.workflow_id]
        assert first.id == second.id
        history = await harness.store.history(view.workflow_id)
        assert [e.name for e in history].count("completed") == 1


async def _count(harness: Harness, workflow_id: uuid.UUID, n: int) -> bool:
    return len(harness.sink.finished[workflow_id]) >= n


class TestCrashBetweenCommitAndPublish:
    async def test_lost_generation_request_is_republished_from_the_outbox(self, harness: Harness) -> None:
        """When the generation request is lost after the commit, the redelivered workflow.requested
        publishes it from the outbox: the workflow completes with one provider call."""
        failed = fail_router_publish_once(harness, "generation.requested")
        view, finished = await harness.run(intent())
        assert view.status is WorkflowStatus.COMPLETED
        assert len(failed) == 1
        [call] = harness.workers.calls[Provider.OPENAI]
        assert call.request.id == failed[0].id  # the very envelope that was lost
        assert isinstance(finished.payload, WorkflowCompleted)
        history = await harness.store.history(view.workflow_id)
        assert [e.name for e in history].count("accepted") == 1

    async def test_lost_completion_notice_is_republished(self, harness: Harness) -> None:
        """When workflow.completed is lost after the commit, the redelivered generation.completed
        publishes it: the cost-tracker gets it once, and the workflow moved once."""
        failed = fail_router_publish_once(harness, "workflow.completed")
        view, finished = await harness.run(intent())
        assert finished.id == failed[0].id
        assert len(harness.sink.finished[view.workflow_id]) == 1
        history = await harness.store.history(view.workflow_id)
        assert [e.name for e in history].count("completed") == 1


class TestSupersededResults:
    async def test_late_result_of_a_superseded_attempt_is_ignored(self, harness: Harness) -> None:
        """After a fallback, a late answer to the first attempt does not move the workflow."""
        harness.workers.script(Provider.AZURE, fail(ErrorType.PROVIDER_UNAVAILABLE))
        harness.workers.script(Provider.OPENAI, ok("from openai", after_s=0.3))
        accepted = await harness.request(intent(IntentType.CONTENT_PLANNING))
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        await eventually(lambda: _has_calls(harness, Provider.OPENAI))
        first_request = harness.workers.calls[Provider.AZURE][0].request
        late = first_request.child(
            GenerationCompleted(
                provider=Provider.AZURE,
                model="azure-model",
                content="late azure answer",
                usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
                latency_ms=9000,
            )
        )
        await harness.bus.publish(late)
        await asyncio.sleep(0.1)
        during = await harness.view(workflow_id)
        assert during.status is WorkflowStatus.GENERATING and during.result is None
        finished = await harness.sink.wait(workflow_id)
        assert finished.payload.content == "from openai"  # type: ignore[attr-defined]
        assert (await harness.view(workflow_id)).result == "from openai"

    async def test_result_for_a_failed_workflow_is_ignored(self, harness: Harness) -> None:
        """A result arriving after the deadline failed the workflow leaves it failed."""
        harness.workers.script(Provider.OPENAI, ok(after_s=0.8))
        accepted = await harness.request(intent(), deadline_s=0.3)
        assert accepted.workflow is not None
        finished = await harness.sink.wait(accepted.workflow.workflow_id)
        assert isinstance(finished.payload, WorkflowFailed)
        await asyncio.sleep(0.7)
        view = await harness.view(accepted.workflow.workflow_id)
        assert view.status is WorkflowStatus.FAILED and view.result is None


async def _has_calls(harness: Harness, provider: Provider) -> bool:
    return bool(harness.workers.calls[provider])


class TestDeadline:
    async def test_deadline_fails_a_stuck_workflow_with_the_reason(self, harness: Harness) -> None:
        """A workflow whose provider never answers fails at its deadline, saying where it was stuck."""
        harness.workers.script(Provider.OPENAI, hang())
        view, finished = await harness.run(intent(), deadline_s=0.4)
        assert view.status is WorkflowStatus.FAILED
        assert isinstance(finished.payload, WorkflowFailed)
        error = finished.payload.error
        assert error.type is ErrorType.OPENAI_TIMEOUT
        assert "deadline of 0.4s passed while generating; waiting for openai (attempt 1)" in error.message
        assert view.provider_states.openai is ProviderState.TIMEOUT
        assert 0.3 <= finished.payload.duration_ms / 1000 < 2

    async def test_deadline_timer_of_a_finished_workflow_changes_nothing(self, harness: Harness) -> None:
        """The deadline timer of a completed workflow is dropped."""
        view, _ = await harness.run(intent(), deadline_s=0.3)
        await asyncio.sleep(0.5)
        stored = await harness.store.get(view.workflow_id)
        assert stored is not None and stored.status is WorkflowStatus.COMPLETED
        assert len(harness.sink.finished[view.workflow_id]) == 1

    async def test_early_deadline_timer_changes_nothing(self, harness: Harness) -> None:
        """A deadline handled long before the deadline (a sweep on a replica with a skewed clock) leaves the
        workflow running; it completes normally."""
        harness.workers.script(Provider.OPENAI, ok(after_s=0.4))
        accepted = await harness.request(intent(), deadline_s=3)
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        early = Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=workflow_id, user_id="user-1")
        await harness.router.on_deadline(early)
        finished = await harness.sink.wait(workflow_id)
        assert isinstance(finished.payload, WorkflowCompleted)

    async def test_no_timer_travels_the_bus(self, harness: Harness) -> None:
        """Deadlines are the sweep's: a workflow start publishes its generation request and nothing else."""
        sent: list[str] = []
        publish = harness.bus.publish

        async def recording(envelope: Envelope, *, delay: float = 0.0) -> None:
            if current_service.get() == "router":
                sent.append(envelope.type)
            await publish(envelope, delay=delay)

        harness.bus.publish = recording  # type: ignore[method-assign]
        await harness.run(intent())
        assert sent == ["generation.requested", "workflow.completed"]

    async def test_replicas_sweeping_together_fail_a_workflow_once(self, harness: Harness) -> None:
        """Two routers sweeping the same store at once: one failure, one history event, and every
        workflow.failed published is the same message (consumers de-duplicate by its id)."""
        await harness.stop_sweep()  # the two sweeps below are the only ones
        harness.workers.script(Provider.OPENAI, hang())
        other = build_router(
            Runtime(bus=harness.bus, settings=harness.router.engine.settings),
            harness.router.engine.settings,
            harness.store,
        )
        accepted = await harness.request(intent(), deadline_s=0.2)
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        await asyncio.sleep(0.25)
        overdue, both_read = harness.store.overdue, asyncio.Barrier(2)

        async def read_together(now: datetime, limit: int) -> list[Workflow]:
            found = await overdue(now, limit)
            await both_read.wait()  # neither writes before both have read: a true race
            return found

        harness.store.overdue = read_together  # type: ignore[method-assign]
        assert await asyncio.gather(harness.router.fail_overdue(), other.fail_overdue()) == [1, 1]
        await harness.sink.wait(workflow_id)
        await asyncio.sleep(0.1)
        assert len({e.id for e in harness.sink.finished[workflow_id]}) == 1
        events = [e.name for e in await harness.store.history(workflow_id)]
        assert events.count("failed") == 1 and (await harness.view(workflow_id)).status is WorkflowStatus.FAILED


class TestStatusQuery:
    async def test_owner_sees_the_whole_state(self, harness: Harness) -> None:
        """The owner gets the workflow's full view right after the accept (read-your-writes)."""
        accepted = await harness.request(intent(), user="alice")
        assert accepted.workflow is not None
        reply = await harness.status(accepted.workflow.workflow_id, "alice")
        assert reply.found and reply.workflow is not None
        assert reply.workflow.workflow_id == accepted.workflow.workflow_id
        assert reply.workflow.status in (WorkflowStatus.GENERATING, WorkflowStatus.COMPLETED)

    async def test_admin_sees_any_workflow(self, harness: Harness) -> None:
        """An admin sees another user's workflow."""
        accepted = await harness.request(intent(), user="alice")
        assert accepted.workflow is not None
        assert (await harness.status(accepted.workflow.workflow_id, "root", admin=True)).found

    @pytest.mark.parametrize("asker", ["mallory", None])
    async def test_others_and_unknown_ids_are_not_found(self, harness: Harness, asker: str | None) -> None:
        """Another user's workflow, like an unknown id, is reported as not found."""
        accepted = await harness.request(intent(), user="alice")
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id if asker else uuid.uuid4()
        reply = await harness.status(workflow_id, asker or "alice")
        assert not reply.found and reply.workflow is None


class TestWaitingStatusQuery:
    async def test_answered_when_the_workflow_finishes(self, harness: Harness) -> None:
        """A query with wait_s on a running workflow is answered as soon as it completes, not after wait_s."""
        harness.workers.script(Provider.OPENAI, ok(after_s=0.4))
        accepted = await harness.request(intent(), user="alice")
        assert accepted.workflow is not None
        started = time.monotonic()
        reply = await harness.status(accepted.workflow.workflow_id, "alice", wait_s=10)
        assert reply.workflow is not None and reply.workflow.status is WorkflowStatus.COMPLETED
        # Not after wait_s (10 s): the upper bound leaves room for a loaded machine (2.9 s seen under the
        # two-worker suite), the lower one shows the answer waited for the 0.4 s generation.
        assert 0.2 < time.monotonic() - started < 5
        assert reply.workflow.result == "generated text"

    async def test_answered_with_the_state_then_when_the_wait_ends(self, harness: Harness) -> None:
        """A workflow still running when wait_s ends: the answer is its state then."""
        harness.workers.script(Provider.OPENAI, hang())
        accepted = await harness.request(intent(), user="alice")
        assert accepted.workflow is not None
        started = time.monotonic()
        reply = await harness.status(accepted.workflow.workflow_id, "alice", wait_s=0.6)
        assert reply.workflow is not None and reply.workflow.status is WorkflowStatus.GENERATING
        assert 0.55 < time.monotonic() - started < 2

    async def test_finished_by_another_replica_is_seen_on_a_re_read(self, harness: Harness) -> None:
        """When another replica finishes the workflow (this one's waiters never hear of it), the held query
        re-reads the store and answers within STATUS_WAIT_RECHECK_S."""
        harness.workers.script(Provider.OPENAI, hang())
        accepted = await harness.request(intent(), user="alice")
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        asked = asyncio.create_task(harness.status(workflow_id, "alice", wait_s=10))
        await asyncio.sleep(0.1)
        stored = await harness.store.get(workflow_id)
        assert stored is not None
        timer = Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=workflow_id)
        failed = harness.router.engine.on_deadline(stored, timer, stored.deadline_at)
        assert failed is not None and await harness.store.save(failed, timer.id)  # not through this router
        finished_at = time.monotonic()
        reply = await asked
        assert reply.workflow is not None and reply.workflow.status is WorkflowStatus.FAILED
        assert time.monotonic() - finished_at < STATUS_WAIT_RECHECK_S + 0.5

    async def test_others_workflow_is_not_found_at_once(self, harness: Harness) -> None:
        """Waiting does not change who may see what: another user's workflow is not found, without a wait."""
        harness.workers.script(Provider.OPENAI, hang())
        accepted = await harness.request(intent(), user="alice")
        assert accepted.workflow is not None
        started = time.monotonic()
        reply = await harness.status(accepted.workflow.workflow_id, "mallory", wait_s=10)
        assert not reply.found and time.monotonic() - started < 1
        assert not harness.router.queries._waiting  # nothing left registered


class TestBadMessages:
    async def test_result_for_an_unknown_workflow_is_dead_lettered(self, harness: Harness) -> None:
        """A generation result for a workflow the router never stored goes to the dead-letter queue."""
        stray = Envelope.new(
            GenerationCompleted(
                provider=Provider.OPENAI,
                model="m",
                content="x",
                usage=Usage(prompt_tokens=1, completion_tokens=1, total_tokens=2),
                latency_ms=1,
            ),
            workflow_id=uuid.uuid4(),
        )
        await harness.bus.publish(stray)
        dead: list[DeadLetter] = []

        async def dead_lettered() -> bool:
            dead.extend(await harness.bus.dead_letters("router"))
            return bool(dead)

        await eventually(dead_lettered)
        assert "unknown workflow" in dead[0].reason

    async def test_a_timer_does_not_travel_the_bus(self, harness: Harness) -> None:
        """workflow.timer is the sweep's own message: no service consumes it, so publishing one is refused."""
        timer = WorkflowTimer(purpose="deadline")
        with pytest.raises(Unroutable):
            await harness.bus.publish(Envelope.new(timer, workflow_id=uuid.uuid4()))
        assert WorkflowTimer.TYPE not in harness.router.handlers()


class TestRaces:
    async def test_completion_losing_a_race_with_the_deadline_is_ignored(self, harness: Harness) -> None:
        """When another handler (here: the deadline on another replica) moves the workflow between a
        completion's read and write, the completion re-reads, finds the workflow failed and changes nothing."""
        harness.workers.script(Provider.OPENAI, ok(after_s=0.1))
        accepted = await harness.request(intent())
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        save, raced = harness.store.save, list[bool]()

        async def racing_save(change: Change, message_id: uuid.UUID) -> bool:
            if not raced:
                raced.append(True)
                stored = await harness.store.get(workflow_id)
                assert stored is not None
                timer = Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=workflow_id)
                deadline = harness.router.engine.on_deadline(stored, timer, stored.deadline_at)
                assert deadline is not None and await save(deadline, timer.id)
            return await save(change, message_id)

        harness.store.save = racing_save  # type: ignore[method-assign]
        await eventually(lambda: _stored_status(harness, workflow_id, WorkflowStatus.FAILED))
        await asyncio.sleep(0.1)
        stored = await harness.store.get(workflow_id)
        assert stored is not None and stored.status is WorkflowStatus.FAILED and stored.result is None
        assert raced and not harness.sink.finished[workflow_id]  # the competing write published nothing here
        assert [e.name for e in await harness.store.history(workflow_id)][-1] == "failed"


async def _stored_status(harness: Harness, workflow_id: uuid.UUID, status: WorkflowStatus) -> bool:
    stored = await harness.store.get(workflow_id)
    return stored is not None and stored.status is status


class TestWrittenCopy:
    async def test_completion_of_a_workflow_this_replica_wrote_skips_the_read(self, harness: Harness) -> None:
        """A generation.completed for a workflow this router wrote last is decided on its own copy: the
        workflow completes without a single store.load."""
        load, loads = harness.store.load, list[uuid.UUID]()

        async def counting_load(workflow_id: uuid.UUID, message_id: uuid.UUID) -> Loaded:
            loads.append(message_id)
            return await load(workflow_id, message_id)

        harness.store.load = counting_load  # type: ignore[method-assign]
        view, finished = await harness.run(intent())
        assert view.status is WorkflowStatus.COMPLETED and finished.type == WorkflowCompleted.TYPE
        assert loads == []

    async def test_completion_on_a_stale_copy_rereads_and_is_ignored(self, harness: Harness) -> None:
        """When another replica moved the workflow after this router wrote it (here: failed it at the
        deadline), the completion's save on the stale copy writes nothing; the router re-reads the workflow,
        finds it failed and changes nothing."""
        harness.workers.script(Provider.OPENAI, ok(after_s=0.2))
        accepted = await harness.request(intent())
        assert accepted.workflow is not None
        workflow_id = accepted.workflow.workflow_id
        stored = await harness.store.get(workflow_id)
        assert stored is not None
        timer = Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=workflow_id)
        deadline = harness.router.engine.on_deadline(stored, timer, stored.deadline_at)
        assert deadline is not None and await harness.store.save(deadline, timer.id)  # not through this router
        await eventually(lambda: _answered(harness, 1))
        await asyncio.sleep(0.2)
        stored = await harness.store.get(workflow_id)
        assert stored is not None and stored.status is WorkflowStatus.FAILED and stored.result is None
        assert not harness.sink.finished[workflow_id]
        assert [e.name for e in await harness.store.history(workflow_id)][-1] == "failed"


async def _answered(harness: Harness, n: int) -> bool:
    return len(harness.workers.answered) >= n
