"""The store contract, run against the in-memory store and PostgreSQL alike (the `store` fixture)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from contracts import Envelope
from contracts.enums import (
    BudgetAction,
    CostPeriod,
    ErrorType,
    IntentType,
    Priority,
    Provider,
    ProviderState,
    WorkflowStatus,
)
from contracts.messages import (
    ErrorInfo,
    FallbackEntry,
    Intent,
    ProviderStates,
    RetryAttempts,
    Usage,
    WorkflowTimer,
)
from services.router.state import Change, Workflow
from services.router.store import GLOBAL_SCOPE, BudgetRecord, WorkflowStore

S = WorkflowStatus
# Microsecond precision, as PostgreSQL stores it.
NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def new_workflow() -> Workflow:
    return Workflow(
        workflow_id=uuid.uuid4(),
        user_id="user-1",
        intent=Intent(
            type=IntentType.CAMPAIGN_EXECUTION,
            data={"topic": "spring", "nested": {"n": 1}},
            platforms=["a", "b"],
            priority=Priority.HIGH,
            send_to_onlyfans=True,
            recipient_ids=["r1", "r2"],
        ),
        status=S.ACCEPTED,
        created_at=NOW,
        updated_at=NOW,
        deadline_at=NOW + timedelta(seconds=120),
        trace_id="ab" * 16,
    )


def creation(workflow: Workflow) -> tuple[Change, uuid.UUID]:
    """A created change moving to generating, with a timer in its outbox; and its message id."""
    cause = Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=workflow.workflow_id, user_id="user-1")
    change = Change(workflow, cause, NOW, created=True)
    change.move(S.GENERATING, "generation_requested", {"provider": "azure"}, current_provider=Provider.AZURE)
    change.emit(WorkflowTimer(purpose="deadline"), delay_s=120)
    return change, uuid.uuid4()


def rich_change(stored: Workflow) -> Change:
    """A change touching every mutable field."""
    cause = Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=stored.workflow_id)
    change = Change(stored, cause, NOW + timedelta(seconds=3))
    change.move(
        S.GENERATING,
        "fallback",
        {"reason": "azure_timeout: slow", "delay_s": 5.0},
        current_provider=Provider.OPENAI,
        provider_states=ProviderStates(azure=ProviderState.TIMEOUT, openai=ProviderState.EXECUTING),
        fallback_history=(FallbackEntry(from_provider=Provider.AZURE, to="openai", reason="slow", timestamp=NOW),),
        retry_attempts=RetryAttempts(openai=1),
        recoveries={"azure_timeout": 1},
        attempts=2,
        generation_id=uuid.uuid4(),
    )
    change.move(
        S.GENERATED,
        "generation_completed",
        result="text ✓",
        model="gpt-4o-mini",
        usage=Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7, estimated=True),
        deadline_at=stored.deadline_at + timedelta(minutes=5),  # a delivery's slot extends the deadline
    )
    change.move(
        S.FAILED,
        "failed",
        error=ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message="down", retryable=False, status_code=503),
        completed_at=NOW + timedelta(seconds=3),
    )
    return change


class TestWorkflowStore:
    async def test_create_then_read_back(self, store: WorkflowStore) -> None:
        """A created workflow reads back equal, at version 1, with its events."""
        change, message_id = creation(new_workflow())
        assert await store.create(change, message_id)
        assert await store.get(change.workflow.workflow_id) == change.result()
        assert change.result().version == 1
        history = await store.history(change.workflow.workflow_id)
        assert [(e.name, e.from_status, e.to_status) for e in history] == [
            ("accepted", None, S.ACCEPTED),
            ("generation_requested", S.ACCEPTED, S.GENERATING),
        ]
        assert history[1].detail == {"provider": "azure"} and history[1].at == NOW

    async def test_create_is_refused_for_an_existing_workflow(self, store: WorkflowStore) -> None:
        """A second create of the same workflow id writes nothing."""
        change, message_id = creation(new_workflow())
        assert await store.create(change, message_id)
        again, other_message = creation(change.workflow)
        assert not await store.create(again, other_message)
        assert len(await store.history(change.workflow.workflow_id)) == 2
        assert (await store.load(change.workflow.workflow_id, other_message)).outbox is None

    async def test_load_returns_the_outbox_of_a_handled_message(self, store: WorkflowStore) -> None:
        """load reports a handled message with the very envelopes its change published."""
        change, message_id = creation(new_workflow())
        await store.create(change, message_id)
        loaded = await store.load(change.workflow.workflow_id, message_id)
        assert loaded.workflow == change.result()
        assert loaded.outbox is not None
        assert [(o.envelope.id, o.due_at) for o in loaded.outbox] == [(o.envelope.id, o.due_at) for o in change.outbox]
        assert loaded.outbox[0].envelope.payload == WorkflowTimer(purpose="deadline")
        fresh = await store.load(change.workflow.workflow_id, uuid.uuid4())
        assert fresh.outbox is None and fresh.workflow == change.result()

    async def test_overdue_lists_running_workflows_past_their_deadline_earliest_first(
        self, store: WorkflowStore
    ) -> None:
        """overdue: the running workflows whose deadline is now or earlier, earliest first, up to the limit;
        not a finished one, not one still in time."""
        deadlines = {"late": -30, "later": -5, "due_now": 0, "in_time": 5, "finished": -60}
        ids = {}
        for name, offset in deadlines.items():
            workflow = replace(new_workflow(), deadline_at=NOW + timedelta(seconds=offset))
            change, message_id = creation(workflow)
            if name == "finished":
                change.move(S.FAILED, "failed", completed_at=NOW)
            assert await store.create(change, message_id)
            ids[name] = workflow.workflow_id
        found = await store.overdue(NOW, limit=10)
        assert [w.workflow_id for w in found] == [ids["late"], ids["later"], ids["due_now"]]
        assert found[0] == await store.get(ids["late"])
        assert [w.workflow_id for w in await store.overdue(NOW, limit=2)] == [ids["late"], ids["later"]]

    async def test_load_of_an_unknown_workflow(self, store: WorkflowStore) -> None:
        """An unknown workflow loads as None."""
        loaded = await store.load(uuid.uuid4(), uuid.uuid4())
        assert loaded.workflow is None and loaded.outbox is None

    async def test_save_round_trips_every_field_and_appends_history(self, store: WorkflowStore) -> None:
        """A save stores every field at the next version and appends its events after the earlier ones."""
        change, message_id = creation(new_workflow())
        await store.create(change, message_id)
        update = rich_change(change.result())
        assert await store.save(update, uuid.uuid4())
        stored = await store.get(change.workflow.workflow_id)
        assert stored == update.result() and stored.version == 2
        names = [e.name for e in await store.history(change.workflow.workflow_id)]
        assert names == ["accepted", "generation_requested", "fallback", "generation_completed", "failed"]

    async def test_save_from_a_stale_version_writes_nothing(self, store: WorkflowStore) -> None:
        """A save computed from an old version is refused: no state, no history, no handled message."""
        change, message_id = creation(new_workflow())
        await store.create(change, message_id)
        first, second = rich_change(change.result()), rich_change(change.result())
        assert await store.save(first, uuid.uuid4())
        late_message = uuid.uuid4()
        assert not await store.save(second, late_message)
        assert (await store.get(change.workflow.workflow_id)) == first.result()
        assert len(await store.history(change.workflow.workflow_id)) == 5
        assert (await store.load(change.workflow.workflow_id, late_message)).outbox is None

    async def test_save_of_a_handled_message_writes_nothing(self, store: WorkflowStore) -> None:
        """A message id already recorded cannot be recorded again with another change."""
        change, message_id = creation(new_workflow())
        await store.create(change, message_id)
        assert not await store.save(rich_change(change.result()), message_id)
        assert await store.get(change.workflow.workflow_id) == change.result()

    async def test_concurrent_saves_from_one_version_let_exactly_one_win(self, store: WorkflowStore) -> None:
        """Two handlers racing from the same version: one write applies, the other is refused."""
        change, message_id = creation(new_workflow())
        await store.create(change, message_id)
        results = await asyncio.gather(*(store.save(rich_change(change.result()), uuid.uuid4()) for _ in range(4)))
        assert sorted(results) == [False, False, False, True]
        assert len(await store.history(change.workflow.workflow_id)) == 5


def budget(scope: str, action: BudgetAction, at: datetime, period: CostPeriod = CostPeriod.DAILY) -> BudgetRecord:
    return BudgetRecord(scope, period, action, Decimal("10.50"), Decimal("10"), at)


class TestBudgetsAndPurge:
    async def test_latest_budget_per_scope_and_period_is_kept(self, store: WorkflowStore) -> None:
        """A newer status replaces the stored one; an older one is ignored; `allow` is not active."""
        await store.put_budget(budget("u1", BudgetAction.BLOCK, NOW))
        await store.put_budget(budget("u1", BudgetAction.ALLOW, NOW - timedelta(minutes=1)))  # stale
        await store.put_budget(budget(GLOBAL_SCOPE, BudgetAction.DOWNGRADE, NOW, CostPeriod.MONTHLY))
        await store.put_budget(budget("u2", BudgetAction.BLOCK, NOW))
        await store.put_budget(budget("u2", BudgetAction.ALLOW, NOW + timedelta(minutes=1)))
        active = {(b.scope, b.period, b.action) for b in await store.active_budgets()}
        assert active == {
            ("u1", CostPeriod.DAILY, BudgetAction.BLOCK),
            (GLOBAL_SCOPE, CostPeriod.MONTHLY, BudgetAction.DOWNGRADE),
        }
        [u1] = [b for b in await store.active_budgets() if b.scope == "u1"]
        assert u1.spent_usd == Decimal("10.50") and u1.limit_usd == Decimal("10")

    async def test_purge_forgets_only_old_handled_messages(self, store: WorkflowStore) -> None:
        """purge_processed removes handled message ids older than the cut-off, at most `limit` of them."""
        ids = []
        for _ in range(3):
            change, message_id = creation(new_workflow())
            await store.create(change, message_id)
            ids.append((change.workflow.workflow_id, message_id))
        assert await store.purge_processed(datetime.now(UTC) - timedelta(hours=1), 100) == 0
        assert await store.purge_processed(datetime.now(UTC) + timedelta(seconds=5), 2) == 2
        assert await store.purge_processed(datetime.now(UTC) + timedelta(seconds=5), 2) == 1
        for workflow_id, message_id in ids:
            loaded = await store.load(workflow_id, message_id)
            assert loaded.outbox is None and loaded.workflow is not None
