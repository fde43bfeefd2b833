"""The per-delivery half of the store contract (delivery rows and the workflow's counters), run against the
in-memory store and PostgreSQL alike (the `store` fixture); concurrency on PostgreSQL only."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from contracts import Envelope
from contracts.enums import DeliveryState, ErrorType, IntentType, WorkflowStatus
from contracts.messages import DeliveryRequested, ErrorInfo, Intent, Recipient, WorkflowTimer
from libs.storage import DatabaseError
from services.router.delivery import DeliveryDecisions, Report, TextUpdate
from services.router.outbox import Outgoing
from services.router.pg_store import PostgresStore
from services.router.report_batch import Pending
from services.router.state import Change, DeliveryRow, Tally, Workflow
from services.router.store import Counted, WorkflowStore

S = WorkflowStatus
D = DeliveryState
# Microsecond precision, as PostgreSQL stores it.
NOW = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
DEADLINE_S = 120.0
GRACE_S = 300.0
REFUSED = ErrorInfo(type=ErrorType.ONLYFANS_API_ERROR, message="refused (400)", retryable=False, status_code=400)
LIMITED = ErrorInfo(type=ErrorType.RATE_LIMIT_EXCEEDED, message="platform 429", retryable=True)
CLOSED = ErrorInfo(type=ErrorType.ONLYFANS_API_ERROR, message="deadline passed while delivering", retryable=False)


def cause(workflow_id: uuid.UUID) -> Envelope:
    return Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=workflow_id, user_id="creator-1")


async def campaign(store: WorkflowStore, fans: int, *, personalized: bool = False, claimed: int = 0) -> Workflow:
    """A stored campaign of `fans` deliveries: delivering (one text for everyone), or generating with the
    first `claimed` rows waiting for their own text (personalized)."""
    workflow_id = uuid.uuid4()
    workflow = Workflow(
        workflow_id=workflow_id,
        user_id="creator-1",
        intent=Intent(type=IntentType.CAMPAIGN_EXECUTION, data={"prompt": "hi"}, send_to_onlyfans=True),
        status=S.ACCEPTED,
        created_at=NOW,
        updated_at=NOW,
        deadline_at=NOW + timedelta(seconds=DEADLINE_S),
        personalized=personalized,
        tally=Tally(total=fans),
    )
    change = Change(workflow, cause(workflow_id), NOW, created=True)
    rows = DeliveryDecisions.rows_for(workflow_id, [_fan(i) for i in range(fans)])
    change.new_deliveries = tuple(
        replace(row, generation_id=uuid.uuid4(), attempts=1) if row.seq < claimed else row for row in rows
    )
    change.move(S.GENERATING, "generation_requested")
    if not personalized:
        change.move(S.GENERATED, "generation_completed", result="hello everyone")
        change.move(S.DELIVERING, "delivery_requested")
    assert await store.create(change, uuid.uuid4())
    return change.result()


def _fan(i: int) -> Recipient:
    return Recipient(id=f"fan-{i}", vars={"name": f"Fan {i}"})


async def rows_of(store: WorkflowStore, workflow: Workflow) -> list[DeliveryRow]:
    return await store.deliveries(workflow.workflow_id, after_seq=None, limit=100_000)


async def tally_of(store: WorkflowStore, workflow: Workflow) -> Tally:
    stored = await store.get(workflow.workflow_id)
    assert stored is not None
    return stored.tally


def sent(row: DeliveryRow, at: datetime = NOW) -> Report:
    return Report(row.delivery_id, D.SENT, sent_at=at, platform_message_id=f"msg-{row.seq}")


def failed(row: DeliveryRow, error: ErrorInfo = REFUSED) -> Report:
    return Report(row.delivery_id, D.FAILED, error=error)


def scheduled(row: DeliveryRow, slot: datetime, error: ErrorInfo | None = None) -> Report:
    kind = D.RATE_LIMITED if error is not None and error.type is ErrorType.RATE_LIMIT_EXCEEDED else D.PENDING
    return Report(row.delivery_id, kind, slot_at=slot, error=error)


async def report(store: WorkflowStore, workflow: Workflow, what: Report, message_id: uuid.UUID | None = None) -> bool:
    counted = await store.report(workflow.workflow_id, message_id or uuid.uuid4(), what, GRACE_S, NOW)
    assert counted is not None
    return counted.applied


def closing(stored: Workflow, at: datetime = NOW + timedelta(seconds=DEADLINE_S)) -> Change:
    """The deadline's change: the open deliveries fail with CLOSED, and the workflow ends by its counts."""
    change = Change(stored, cause(stored.workflow_id), at)
    change.close_open(CLOSED)
    ended = S.COMPLETED if stored.tally.sent else S.FAILED
    change.move(ended, "closed", completed_at=at, error=CLOSED)
    return change


class TestReports:
    async def test_a_report_is_applied_once_per_message_id(self, store: WorkflowStore) -> None:
        """The same report message again answers applied=False and changes neither the row nor the counters."""
        workflow = await campaign(store, 2)
        first = (await rows_of(store, workflow))[0]
        message_id = uuid.uuid4()
        counted = await store.report(workflow.workflow_id, message_id, sent(first), GRACE_S, NOW)
        assert counted is not None and counted.applied and counted.tally.sent == 1
        before = await rows_of(store, workflow)
        again = await store.report(workflow.workflow_id, message_id, failed(first), GRACE_S, NOW)
        assert again is not None and not again.applied
        assert again.status is S.DELIVERING and again.tally == counted.tally
        assert await rows_of(store, workflow) == before
        assert await tally_of(store, workflow) == counted.tally

    async def test_a_report_for_an_unknown_workflow_is_none(self, store: WorkflowStore) -> None:
        """No workflow, no counters: the handler refuses the report."""
        row = DeliveryDecisions.rows_for(uuid.uuid4(), [_fan(0)])[0]
        assert await store.report(uuid.uuid4(), uuid.uuid4(), sent(row), GRACE_S, NOW) is None

    async def test_sent_failed_and_scheduled_move_their_counters(self, store: WorkflowStore) -> None:
        """A first slot counts as scheduled, a pushed-back slot as a retry (not a second scheduled); a send
        counts sent, a refusal failed; a refusal after the send and a second send change nothing."""
        workflow = await campaign(store, 3)
        a, b, c = await rows_of(store, workflow)
        slot = NOW + timedelta(seconds=10)
        assert await report(store, workflow, scheduled(a, slot))
        assert await report(store, workflow, scheduled(b, slot + timedelta(seconds=1)))
        assert await report(store, workflow, scheduled(a, slot + timedelta(seconds=5), LIMITED))
        tally = await tally_of(store, workflow)
        assert (tally.scheduled, tally.retries, tally.sent, tally.failed) == (2, 1, 0, 0)
        assert tally.last_slot_at == slot + timedelta(seconds=5)
        assert await report(store, workflow, sent(a))
        assert await report(store, workflow, failed(b))
        assert await report(store, workflow, failed(a))  # after the send: the fan got it, it stays sent
        assert await report(store, workflow, sent(a))
        tally = await tally_of(store, workflow)
        assert (tally.total, tally.scheduled, tally.sent, tally.failed, tally.finished) == (3, 2, 1, 1, 2)
        after_a, after_b, after_c = await rows_of(store, workflow)
        assert (after_a.status, after_a.platform_message_id, after_a.error) == (D.SENT, "msg-0", None)
        assert after_a.scheduled_for == slot + timedelta(seconds=5)
        assert (after_b.status, after_b.error) == (D.FAILED, REFUSED)
        assert after_c == c

    async def test_a_stale_slot_never_moves_a_delivery_back(self, store: WorkflowStore) -> None:
        """An earlier slot reported after a later one keeps the later; a slot reported after the outcome
        leaves the outcome and only fills in a missing scheduledFor."""
        workflow = await campaign(store, 2)
        a, b = await rows_of(store, workflow)
        later = NOW + timedelta(seconds=30)
        assert await report(store, workflow, scheduled(a, later))
        assert await report(store, workflow, scheduled(a, NOW + timedelta(seconds=1)))
        assert await report(store, workflow, sent(b))
        assert await report(store, workflow, scheduled(b, later))
        after_a, after_b = await rows_of(store, workflow)
        assert (after_a.status, after_a.scheduled_for) == (D.PENDING, later)
        assert (after_b.status, after_b.scheduled_for) == (D.SENT, later)
        assert (await tally_of(store, workflow)).scheduled == 2

    async def test_a_slot_extends_the_deadline_to_slot_plus_grace(self, store: WorkflowStore) -> None:
        """A delivering workflow's deadline moves to its latest slot + grace, never earlier."""
        workflow = await campaign(store, 2)
        a, b = await rows_of(store, workflow)
        far = NOW + timedelta(hours=1)
        assert await report(store, workflow, scheduled(a, far))
        assert await report(store, workflow, scheduled(b, NOW + timedelta(seconds=1)))
        stored = await store.get(workflow.workflow_id)
        assert stored is not None and stored.deadline_at == far + timedelta(seconds=GRACE_S)

    async def test_a_slot_does_not_extend_a_finished_workflow(self, store: WorkflowStore) -> None:
        """Once the workflow is terminal, a slot reported for one of its open deliveries leaves the
        deadline where it was (the sweep must not pick a finished workflow up again)."""
        workflow = await campaign(store, 2)
        a, _ = await rows_of(store, workflow)
        change = Change(workflow, cause(workflow.workflow_id), NOW)
        change.move(S.FAILED, "failed", completed_at=NOW)  # without closing the deliveries
        assert await store.save(change, uuid.uuid4())
        assert await report(store, workflow, scheduled(a, NOW + timedelta(hours=1)))
        stored = await store.get(workflow.workflow_id)
        assert stored is not None and stored.deadline_at == workflow.deadline_at
        assert (await rows_of(store, workflow))[0].scheduled_for == NOW + timedelta(hours=1)

    async def test_a_late_send_after_the_closing_save_counts_sent(self, store: WorkflowStore) -> None:
        """A delivery failed by the deadline's save and then reported sent moves from failed to sent in the
        counters and its row (the fan did get it)."""
        workflow = await campaign(store, 3)
        a, b, _ = await rows_of(store, workflow)
        assert await report(store, workflow, sent(a))
        stored = await store.get(workflow.workflow_id)
        assert stored is not None and await store.save(closing(stored), uuid.uuid4())
        tally = await tally_of(store, workflow)
        assert (tally.sent, tally.failed) == (1, 2)
        counted = await store.report(workflow.workflow_id, uuid.uuid4(), sent(b), GRACE_S, NOW)
        assert counted is not None and counted.applied and counted.status is S.COMPLETED
        assert (counted.tally.sent, counted.tally.failed) == (2, 1)
        assert await tally_of(store, workflow) == counted.tally
        row = (await rows_of(store, workflow))[1]
        assert (row.status, row.error, row.platform_message_id) == (D.SENT, None, "msg-1")


class TestClosingSave:
    async def test_a_closing_save_fails_exactly_the_open_deliveries(self, store: WorkflowStore) -> None:
        """Change.close_open: every unfinished row fails with the reason, finished rows keep their outcome,
        and failed = total - sent - cancelled."""
        workflow = await campaign(store, 5)
        a, b, c, _, _ = await rows_of(store, workflow)
        assert await report(store, workflow, sent(a))
        assert await report(store, workflow, failed(b))
        assert await report(store, workflow, scheduled(c, NOW + timedelta(seconds=5)))
        stored = await store.get(workflow.workflow_id)
        assert stored is not None
        change = closing(stored)
        assert await store.save(change, uuid.uuid4())
        after = await rows_of(store, workflow)
        assert [(r.status, r.error) for r in after] == [
            (D.SENT, None),
            (D.FAILED, REFUSED),
            (D.FAILED, CLOSED),
            (D.FAILED, CLOSED),
            (D.FAILED, CLOSED),
        ]
        assert after[2].scheduled_for == NOW + timedelta(seconds=5)
        tally = await tally_of(store, workflow)
        assert (tally.total, tally.sent, tally.failed, tally.cancelled) == (5, 1, 4, 0)
        assert tally.all_finished and change.result().tally.counts() == tally.counts()
        final = await store.get(workflow.workflow_id)
        assert final is not None and final.status is S.COMPLETED

    async def test_a_save_without_closing_leaves_rows_and_counters(self, store: WorkflowStore) -> None:
        """A transition that is not closing never writes the counters, whatever its copy of them says."""
        workflow = await campaign(store, 2)
        a, _ = await rows_of(store, workflow)
        assert await report(store, workflow, sent(a))
        change = Change(workflow, cause(workflow.workflow_id), NOW)  # its copy: nothing sent
        change.move(S.DELIVERING, "delivery_requested")
        assert await store.save(change, uuid.uuid4())
        tally = await tally_of(store, workflow)
        assert (tally.sent, tally.failed) == (1, 0)
        assert [r.status for r in await rows_of(store, workflow)] == [D.SENT, D.PENDING]


def written(row: DeliveryRow, workflow: Workflow, successor: DeliveryRow | None) -> TextUpdate:
    """A personalized text written for `row` (answering its request), claiming `successor`."""
    change = Change(workflow, cause(workflow.workflow_id), NOW)
    change.emit(DeliveryRequested(delivery_id=row.delivery_id, account_id="creator-1", recipient_id=row.recipient_id,
                                  text="hi"))  # fmt: skip
    claimed = replace(successor, generation_id=uuid.uuid4(), attempts=1) if successor else None
    return TextUpdate(
        answered=row.generation_id or uuid.uuid4(),
        row=replace(row, text=f"hello {row.recipient_id}"),
        successor=claimed,
        generated=1,
        deadline_at=NOW + timedelta(seconds=DEADLINE_S * 2),
        change=change,
    )


class TestWriteText:
    async def test_a_text_is_written_with_the_successor_claimed_and_counted(self, store: WorkflowStore) -> None:
        """The row gets its text, the successor its request, `generated` one more, the deadline moves on, and
        the message is recorded with its outbox."""
        workflow = await campaign(store, 3, personalized=True, claimed=1)
        first, second, _ = await rows_of(store, workflow)
        update = written(first, workflow, second)
        message_id = uuid.uuid4()
        counted = await store.write_text(workflow.workflow_id, message_id, update)
        assert counted is not None and counted.applied and counted.status is S.GENERATING
        assert (counted.tally.generated, counted.tally.ungenerated, counted.tally.failed) == (1, 0, 0)
        after_first, after_second, _ = await rows_of(store, workflow)
        assert after_first.text == "hello fan-0"
        assert update.successor is not None
        assert (after_second.generation_id, after_second.attempts) == (update.successor.generation_id, 1)
        stored = await store.get(workflow.workflow_id)
        assert stored is not None and stored.deadline_at == NOW + timedelta(seconds=DEADLINE_S * 2)
        loaded = await store.load(workflow.workflow_id, message_id)
        assert loaded.outbox is not None
        assert [o.envelope.id for o in loaded.outbox] == [o.envelope.id for o in update.change.outbox]

    async def test_a_stale_answer_writes_nothing(self, store: WorkflowStore) -> None:
        """A result for a request the row no longer waits for (superseded by a retry): None, no row, no
        counter, no successor, no handled message."""
        workflow = await campaign(store, 3, personalized=True, claimed=1)
        before = await rows_of(store, workflow)
        stale = replace(written(before[0], workflow, before[1]), answered=uuid.uuid4())
        message_id = uuid.uuid4()
        assert await store.write_text(workflow.workflow_id, message_id, stale) is None
        assert await rows_of(store, workflow) == before
        assert before[1].generation_id is None
        tally = await tally_of(store, workflow)
        assert (tally.generated, tally.ungenerated) == (0, 0)
        assert (await store.load(workflow.workflow_id, message_id)).outbox is None

    async def test_a_second_answer_to_a_written_row_writes_nothing(self, store: WorkflowStore) -> None:
        """The row has its text: the same result again (another message id) is stale, and counts nothing."""
        workflow = await campaign(store, 2, personalized=True, claimed=1)
        first, second = await rows_of(store, workflow)
        assert await store.write_text(workflow.workflow_id, uuid.uuid4(), written(first, workflow, second))
        assert await store.write_text(workflow.workflow_id, uuid.uuid4(), written(first, workflow, None)) is None
        assert (await tally_of(store, workflow)).generated == 1

    async def test_a_given_up_text_fails_its_delivery(self, store: WorkflowStore) -> None:
        """A text given up on fails its row and counts both ungenerated and failed."""
        workflow = await campaign(store, 2, personalized=True, claimed=2)
        first, _ = await rows_of(store, workflow)
        update = TextUpdate(
            answered=first.generation_id or uuid.uuid4(),
            row=replace(first, status=D.FAILED, error=REFUSED),
            ungenerated=1,
            change=Change(workflow, cause(workflow.workflow_id), NOW),
        )
        counted = await store.write_text(workflow.workflow_id, uuid.uuid4(), update)
        assert counted is not None
        assert (counted.tally.generated, counted.tally.ungenerated, counted.tally.failed) == (0, 1, 1)
        row = (await rows_of(store, workflow))[0]
        assert (row.status, row.error) == (D.FAILED, REFUSED)

    async def test_an_already_claimed_successor_keeps_its_request(self, store: WorkflowStore) -> None:
        """The successor already waits for a request of its own: the write leaves that claim alone."""
        workflow = await campaign(store, 2, personalized=True, claimed=2)
        first, second = await rows_of(store, workflow)
        assert await store.write_text(workflow.workflow_id, uuid.uuid4(), written(first, workflow, second))
        after = (await rows_of(store, workflow))[1]
        assert (after.generation_id, after.attempts) == (second.generation_id, 1)


class TestRecordAndReads:
    async def test_record_keeps_a_message_once_with_its_outbox(self, store: WorkflowStore) -> None:
        """record: True the first time (load returns the outbox), False for the same message again."""
        workflow = await campaign(store, 1)
        outbox = (Outgoing(cause(workflow.workflow_id).child(WorkflowTimer(purpose="deadline")), NOW),)
        message_id = uuid.uuid4()
        assert await store.record(workflow.workflow_id, message_id, outbox)
        assert not await store.record(workflow.workflow_id, message_id, ())
        loaded = await store.load(workflow.workflow_id, message_id)
        assert loaded.outbox is not None and [o.envelope.id for o in loaded.outbox] == [outbox[0].envelope.id]

    async def test_deliveries_are_paged_in_campaign_order(self, store: WorkflowStore) -> None:
        """Keyset pages: after_seq None starts at the first, each page continues after the last seq seen."""
        workflow = await campaign(store, 7)
        pages: list[list[int]] = []
        after: int | None = None
        while True:
            page = await store.deliveries(workflow.workflow_id, after_seq=after, limit=3)
            if not page:
                break
            pages.append([row.seq for row in page])
            after = page[-1].seq
        assert pages == [[0, 1, 2], [3, 4, 5], [6]]
        assert [r.recipient_id for r in await rows_of(store, workflow)] == [f"fan-{i}" for i in range(7)]

    async def test_deliveries_filtered_by_status_are_paged_in_order(self, store: WorkflowStore) -> None:
        """With a status, only the deliveries in it, still in seq order and keyset-paged."""
        workflow = await campaign(store, 8)
        rows = await rows_of(store, workflow)
        for row in rows:
            if row.seq % 3 != 1:
                assert await report(store, workflow, sent(row))
        first = await store.deliveries(workflow.workflow_id, after_seq=None, limit=2, status=D.SENT)
        rest = await store.deliveries(workflow.workflow_id, after_seq=first[-1].seq, limit=10, status=D.SENT)
        assert [r.seq for r in first] == [0, 2] and [r.seq for r in rest] == [3, 5, 6]
        pending = await store.deliveries(workflow.workflow_id, after_seq=None, limit=10, status=D.PENDING)
        assert [r.seq for r in pending] == [1, 4, 7]
        assert await store.deliveries(workflow.workflow_id, after_seq=None, limit=10, status=D.FAILED) == []

    async def test_delivery_at_and_for(self, store: WorkflowStore) -> None:
        """A row by its seq and by the generation request its text waits for; None when there is none."""
        workflow = await campaign(store, 3, personalized=True, claimed=2)
        rows = await rows_of(store, workflow)
        assert await store.delivery_at(workflow.workflow_id, 2) == rows[2]
        assert await store.delivery_at(workflow.workflow_id, 3) is None
        assert rows[1].generation_id is not None
        assert await store.delivery_for(workflow.workflow_id, rows[1].generation_id) == rows[1]
        assert await store.delivery_for(workflow.workflow_id, uuid.uuid4()) is None

    async def test_next_open_is_the_earliest_slot_then_the_first_unscheduled(self, store: WorkflowStore) -> None:
        """next_open: the unfinished delivery with the earliest slot; without slots the first in order;
        None once every delivery is finished."""
        workflow = await campaign(store, 4)
        a, b, c, d = await rows_of(store, workflow)
        assert (await store.next_open(workflow.workflow_id)) == a
        assert await report(store, workflow, scheduled(b, NOW + timedelta(seconds=20)))
        assert await report(store, workflow, scheduled(c, NOW + timedelta(seconds=10)))
        assert await report(store, workflow, scheduled(a, NOW + timedelta(seconds=5)))
        assert await report(store, workflow, sent(a))
        found = await store.next_open(workflow.workflow_id)
        assert found is not None and found.seq == c.seq
        for row in (b, c):
            assert await report(store, workflow, failed(row))
        found = await store.next_open(workflow.workflow_id)
        assert found is not None and found.seq == d.seq and found.scheduled_for is None
        assert await report(store, workflow, sent(d))
        assert await store.next_open(workflow.workflow_id) is None

    async def test_first_failed_is_the_lowest_failed_seq(self, store: WorkflowStore) -> None:
        """first_failed: None while nothing failed, then the failed delivery first in campaign order."""
        workflow = await campaign(store, 4)
        rows = await rows_of(store, workflow)
        assert await store.first_failed(workflow.workflow_id) is None
        assert await report(store, workflow, failed(rows[3]))
        assert await report(store, workflow, failed(rows[1], LIMITED))
        found = await store.first_failed(workflow.workflow_id)
        assert found is not None and (found.seq, found.error) == (1, LIMITED)


# --- concurrency (PostgreSQL) ---------------------------------------------------------------------------------

CONCURRENT_FANS = 200


@pytest.fixture
async def pg_store(postgres_dsn: str, pg_schema: str) -> AsyncIterator[PostgresStore]:
    """A PostgreSQL store with a pool wide enough for real contention on one workflow's row."""
    instance = PostgresStore(postgres_dsn, schema=pg_schema, pool_size=32)
    await instance.start()
    yield instance
    await instance.close()


@pytest.mark.integration
class TestConcurrentReports:
    async def test_concurrent_reports_on_one_workflow_lose_no_update(self, pg_store: PostgresStore) -> None:
        """200 deliveries, each scheduled and sent, all reports at once over the pool: every one applies,
        none errs (no deadlock), and the counters are exact."""
        workflow = await campaign(pg_store, CONCURRENT_FANS)
        rows = await rows_of(pg_store, workflow)
        slot = NOW + timedelta(seconds=30)
        reports = [scheduled(row, slot + timedelta(milliseconds=row.seq)) for row in rows]
        reports += [sent(row) for row in rows]
        results = await asyncio.gather(
            *(pg_store.report(workflow.workflow_id, uuid.uuid4(), r, GRACE_S, NOW) for r in reports)
        )
        assert all(counted is not None and counted.applied for counted in results)
        tally = await tally_of(pg_store, workflow)
        assert (tally.total, tally.scheduled, tally.sent, tally.failed) == (200, 200, 200, 0)
        assert tally.last_slot_at == slot + timedelta(milliseconds=CONCURRENT_FANS - 1)
        assert sorted(c.tally.finished for c in results if c is not None)[-1] == 200  # a report saw the end
        assert {r.status for r in await rows_of(pg_store, workflow)} == {D.SENT}

    async def test_reports_arriving_together_share_commits(
        self, pg_store: PostgresStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """400 reports at once are written in batches (far fewer statements than reports), each answered with
        the counters its batch left; the totals are exact."""
        workflow = await campaign(pg_store, CONCURRENT_FANS)
        rows = await rows_of(pg_store, workflow)
        batches: list[int] = []
        write = pg_store._write_reports

        async def counting(batch: Sequence[Pending], *, grace: timedelta) -> list[Counted | None]:
            batches.append(len(batch))
            return await write(batch, grace=grace)

        monkeypatch.setattr(pg_store, "_write_reports", counting)
        reports = [scheduled(row, NOW + timedelta(seconds=1)) for row in rows] + [sent(row) for row in rows]
        results = await asyncio.gather(
            *(pg_store.report(workflow.workflow_id, uuid.uuid4(), r, GRACE_S, NOW) for r in reports)
        )
        assert all(c is not None and c.applied for c in results)
        assert sum(batches) >= 2 * CONCURRENT_FANS - 1 and len(batches) <= 2 * CONCURRENT_FANS // 10
        tally = await tally_of(pg_store, workflow)
        assert (tally.scheduled, tally.sent) == (CONCURRENT_FANS, CONCURRENT_FANS)

    async def test_a_report_the_database_refuses_fails_alone(self, pg_store: PostgresStore) -> None:
        """A report with a NUL in its text, batched with good ones: it raises DatabaseError, the others are
        written."""
        workflow = await campaign(pg_store, 20)
        rows = await rows_of(pg_store, workflow)
        bad = Report(rows[0].delivery_id, D.SENT, sent_at=NOW, platform_message_id="msg\x00nul")
        calls = [pg_store.report(workflow.workflow_id, uuid.uuid4(), sent(row), GRACE_S, NOW) for row in rows[1:]]
        results = await asyncio.gather(
            *calls[:10],
            pg_store.report(workflow.workflow_id, uuid.uuid4(), bad, GRACE_S, NOW),
            *calls[10:],
            return_exceptions=True,
        )
        assert isinstance(results[10], DatabaseError) and results[10].permanent
        assert all(isinstance(r, Counted) and r.applied for i, r in enumerate(results) if i != 10)
        assert (await tally_of(pg_store, workflow)).sent == 19

    async def test_reports_racing_a_closing_save_never_deadlock(self, pg_store: PostgresStore) -> None:
        """Reports for every delivery race the deadline's closing save: nothing errs, every row is finished,
        and the counters match the rows (a send after the close counts sent, not failed)."""
        for _ in range(5):
            workflow = await campaign(pg_store, CONCURRENT_FANS)
            rows = await rows_of(pg_store, workflow)
            sends = [sent(row) if row.seq % 2 else failed(row) for row in rows]
            calls = [pg_store.report(workflow.workflow_id, uuid.uuid4(), r, GRACE_S, NOW) for r in sends]
            half = CONCURRENT_FANS // 2
            await asyncio.gather(*calls[:half])  # these refusals are in before the close: they keep theirs
            results = await asyncio.gather(pg_store.save(closing(workflow), uuid.uuid4()), *calls[half:])
            assert results[0] is True
            after = await rows_of(pg_store, workflow)
            assert all(row.is_final for row in after)
            tally = await tally_of(pg_store, workflow)
            assert tally.sent == sum(r.status is D.SENT for r in after) == CONCURRENT_FANS // 2
            assert tally.failed == sum(r.status is D.FAILED for r in after) == CONCURRENT_FANS // 2
            # Refusals before the close keep theirs; one racing it may find its row closed already.
            assert REFUSED in {r.error for r in after if r.status is D.FAILED} <= {REFUSED, CLOSED}

    async def test_texts_reports_and_a_closing_save_racing_never_deadlock(self, pg_store: PostgresStore) -> None:
        """A personalized campaign's texts written (each claiming its successor), reports and the deadline's
        closing save, all at once: nothing errs, and the counters match the rows."""
        half = CONCURRENT_FANS // 2
        workflow = await campaign(pg_store, CONCURRENT_FANS, personalized=True, claimed=half)
        rows = await rows_of(pg_store, workflow)
        updates = [written(row, workflow, rows[row.seq + half]) for row in rows[:half]]
        texts = [pg_store.write_text(workflow.workflow_id, uuid.uuid4(), update) for update in updates]
        reports = [pg_store.report(workflow.workflow_id, uuid.uuid4(), sent(row), GRACE_S, NOW) for row in rows[::3]]
        close = pg_store.save(closing(workflow), uuid.uuid4())
        results = await asyncio.gather(*texts[: half // 2], *reports, close, *texts[half // 2 :])
        assert results[half // 2 + len(reports)] is True  # the closing save applied
        after = await rows_of(pg_store, workflow)
        assert all(row.is_final for row in after)
        tally = await tally_of(pg_store, workflow)
        assert tally.generated == sum(row.text is not None for row in after) > 0
        assert tally.sent == sum(row.status is D.SENT for row in after)
        assert tally.failed == sum(row.status is D.FAILED for row in after)
        assert tally.sent + tally.failed == CONCURRENT_FANS
