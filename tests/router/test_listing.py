"""The workflow list (workflow.list.query): who sees which workflows, every filter, keyset pages across ties in
created_at, and a bad cursor — on the in-memory store and PostgreSQL alike (the `store` fixture); the query
plans on PostgreSQL."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from contracts import Envelope
from contracts.enums import DeliveryState, ErrorType, IntentType, WorkflowStatus
from contracts.messages import (
    DeliveryCounts,
    ErrorInfo,
    Intent,
    Recipient,
    Requester,
    WorkflowListQuery,
    WorkflowListReply,
    WorkflowTimer,
)
from services.router import pg_sql
from services.router.delivery import DeliveryDecisions, Report
from services.router.listing import InvalidCursor, Keyset, WorkflowFilter
from services.router.pg_store import PostgresStore
from services.router.state import Change, Tally, Workflow
from services.router.store import WorkflowStore
from tests.router.harness import WAIT_S, Harness

S = WorkflowStatus
# Microsecond precision, as PostgreSQL stores it.
T0 = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
ALICE = Requester(user_id="alice")
ADMIN = Requester(user_id="root", is_admin=True)
FAILED = ErrorInfo(type=ErrorType.PROVIDER_UNAVAILABLE, message="down", retryable=False)


async def put(
    store: WorkflowStore,
    user: str,
    *,
    at: datetime = T0,
    account: str | None = None,
    status: WorkflowStatus = S.ACCEPTED,
    kind: IntentType = IntentType.MESSAGE_GENERATION,
    workflow_id: uuid.UUID | None = None,
    fans: int = 0,
) -> Workflow:
    """A stored workflow of `user` created at `at` (with `fans` deliveries: a campaign)."""
    workflow = Workflow(
        workflow_id=workflow_id or uuid.uuid4(),
        user_id=user,
        intent=Intent(type=kind, data={"prompt": "hi"}, send_to_onlyfans=fans > 0),
        status=status,
        created_at=at,
        updated_at=at,
        deadline_at=at + timedelta(minutes=5),
        error=FAILED if status is S.FAILED else None,
        completed_at=at if status in (S.FAILED, S.COMPLETED) else None,
        account_id=account,
        tally=Tally(total=fans),
    )
    cause = Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=workflow.workflow_id, user_id=user)
    change = Change(workflow, cause, at, created=True)
    if fans:
        fan_list = [Recipient(id=f"fan-{i}") for i in range(fans)]
        change.new_deliveries = DeliveryDecisions.rows_for(workflow.workflow_id, fan_list)
    assert await store.create(change, uuid.uuid4())
    return change.result()


async def page(store: WorkflowStore, requester: Requester = ALICE, limit: int = 50, **filters: Any) -> list[uuid.UUID]:
    where = replace(
        WorkflowFilter(user_id=requester.user_id, is_admin=requester.is_admin, accounts=tuple(requester.accounts)),
        **filters,
    )
    return [w.workflow_id for w in await store.list_workflows(where, limit)]


class TestVisibility:
    async def test_a_user_sees_their_own_and_not_another_users(self, store: WorkflowStore) -> None:
        """alice lists her workflows, newest first; bob's is not among them."""
        older = await put(store, "alice", at=T0)
        newer = await put(store, "alice", at=T0 + timedelta(seconds=1))
        await put(store, "bob", at=T0 + timedelta(seconds=2))
        assert await page(store) == [newer.workflow_id, older.workflow_id]

    async def test_an_account_member_sees_the_accounts_workflows(self, store: WorkflowStore) -> None:
        """With `acme` in her token alice sees bob's workflow sent from acme and acme's own (no account: sent as
        acme), not bob's sent as himself; without the claim she sees none of them."""
        own = await put(store, "alice", at=T0)
        bobs_for_acme = await put(store, "bob", at=T0 + timedelta(seconds=1), account="acme")
        acmes_own = await put(store, "acme", at=T0 + timedelta(seconds=2))
        await put(store, "bob", at=T0 + timedelta(seconds=3))
        mine_for_acme = await put(store, "alice", at=T0 + timedelta(seconds=4), account="acme")
        member = Requester(user_id="alice", accounts=["acme"])
        expected = [mine_for_acme, acmes_own, bobs_for_acme, own]
        assert await page(store, member) == [w.workflow_id for w in expected]
        assert await page(store) == [mine_for_acme.workflow_id, own.workflow_id]

    async def test_an_admin_sees_everyones(self, store: WorkflowStore) -> None:
        """An admin's list holds every user's workflows."""
        made = [await put(store, user, at=T0 + timedelta(seconds=i)) for i, user in enumerate(["a", "b", "c"])]
        assert await page(store, ADMIN) == [w.workflow_id for w in reversed(made)]


class TestFilters:
    async def test_status(self, store: WorkflowStore) -> None:
        """status=failed lists only the failed ones."""
        failed = await put(store, "alice", status=S.FAILED)
        await put(store, "alice", at=T0 + timedelta(seconds=1), status=S.COMPLETED)
        assert await page(store, status=S.FAILED) == [failed.workflow_id]

    async def test_intent_type(self, store: WorkflowStore) -> None:
        """type=campaign_execution lists only campaigns."""
        campaign = await put(store, "alice", kind=IntentType.CAMPAIGN_EXECUTION)
        await put(store, "alice", at=T0 + timedelta(seconds=1), kind=IntentType.CONTENT_PLANNING)
        assert await page(store, intent_type=IntentType.CAMPAIGN_EXECUTION) == [campaign.workflow_id]

    async def test_created_from_is_inclusive_and_created_to_exclusive(self, store: WorkflowStore) -> None:
        """from T+1 to T+3 lists the workflows created at T+1 and T+2, not those at T, T+3."""
        made = [await put(store, "alice", at=T0 + timedelta(seconds=i)) for i in range(4)]
        got = await page(store, created_from=T0 + timedelta(seconds=1), created_to=T0 + timedelta(seconds=3))
        assert got == [made[2].workflow_id, made[1].workflow_id]

    async def test_account_is_the_account_sent_from(self, store: WorkflowStore) -> None:
        """account_id=alice is what alice sent as herself (no account, or account alice), not what she sent
        from acme; account_id=acme the reverse."""
        plain = await put(store, "alice", at=T0)
        named = await put(store, "alice", at=T0 + timedelta(seconds=1), account="alice")
        acme = await put(store, "alice", at=T0 + timedelta(seconds=2), account="acme")
        assert await page(store, account_id="alice") == [named.workflow_id, plain.workflow_id]
        assert await page(store, account_id="acme") == [acme.workflow_id]

    async def test_account_filter_keeps_to_what_the_requester_may_see(self, store: WorkflowStore) -> None:
        """Filtering by an account not in her token, alice gets only what she sent from it herself; an admin
        and a member of the account get everyone's."""
        bobs = await put(store, "bob", at=T0, account="acme")
        hers = await put(store, "alice", at=T0 + timedelta(seconds=1), account="acme")
        await put(store, "bob", at=T0 + timedelta(seconds=2))
        assert await page(store, account_id="acme") == [hers.workflow_id]
        both = [hers.workflow_id, bobs.workflow_id]
        assert await page(store, ADMIN, account_id="acme") == both
        assert await page(store, Requester(user_id="carol", accounts=["acme"]), account_id="acme") == both
        assert await page(store, Requester(user_id="carol", accounts=["acme"]), account_id="bob") == []


class TestPages:
    async def test_pages_walk_every_workflow_once_across_ties(self, store: WorkflowStore) -> None:
        """Seven workflows, five created in the same microsecond, read two at a time by keyset: each exactly
        once, newest first and ties by id descending."""
        tied = [await put(store, "alice", at=T0 + timedelta(seconds=1)) for _ in range(5)]
        others = [await put(store, "alice", at=T0), await put(store, "alice", at=T0 + timedelta(seconds=2))]
        expected = [others[1].workflow_id, *sorted((w.workflow_id for w in tied), reverse=True), others[0].workflow_id]
        seen: list[uuid.UUID] = []
        after: Keyset | None = None
        while True:
            where = WorkflowFilter(user_id="alice", after=after)
            rows = await store.list_workflows(where, 2)
            seen.extend(w.workflow_id for w in rows)
            if len(rows) < 2:
                break
            after = Keyset.of(rows[-1])
        assert seen == expected

    async def test_the_query_pages_with_a_cursor_until_none(self, harness: Harness) -> None:
        """Through the router: limit 2 over five workflows is pages of 2, 2, 1; the last has no next cursor
        and each item says its account, status and deliveries."""
        store = harness.store
        made = [await put(store, "alice", at=T0 + timedelta(seconds=i), account="acme") for i in range(4)]
        campaign = await put(store, "alice", at=T0 + timedelta(seconds=9), status=S.DELIVERING, fans=3)
        rows = await store.deliveries(campaign.workflow_id, after_seq=None, limit=3)
        sent = Report(rows[0].delivery_id, kind=DeliveryState.SENT, sent_at=T0, platform_message_id="m-1")
        await store.report(campaign.workflow_id, uuid.uuid4(), sent, 1.0, T0)
        cursor: str | None = None
        pages: list[list[uuid.UUID]] = []
        replies: list[WorkflowListReply] = []
        while True:
            reply = await ask(harness, WorkflowListQuery(requester=ALICE, limit=2, cursor=cursor))
            assert reply.ok
            replies.append(reply)
            pages.append([item.workflow_id for item in reply.workflows])
            cursor = reply.next_cursor
            if cursor is None:
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [w for p in pages for w in p] == [campaign.workflow_id, *(w.workflow_id for w in reversed(made))]
        top = replies[0].workflows[0]
        assert (top.status, top.deliveries) == (S.DELIVERING, DeliveryCounts(total=3, sent=1))
        assert top.account_id is None and replies[0].workflows[1].account_id == "acme"
        assert replies[0].workflows[1].deliveries is None  # no deliveries: none counted


class TestCursor:
    def test_a_cursor_decodes_to_where_it_was_made(self) -> None:
        """A page's cursor is opaque text that decodes back to the position it was made from."""
        keyset = Keyset(T0, uuid.uuid4())
        cursor = keyset.encode()
        assert "|" not in cursor and "=" not in cursor
        assert Keyset.decode(cursor) == keyset

    @pytest.mark.parametrize(
        "cursor",
        [
            "not base64!",
            "",
            Keyset(T0, uuid.UUID(int=7)).encode() + "==",  # padded: not a spelling we wrote
            "MjAyNi0wMy0wMVQxMjowMDowMA",  # base64 of a time alone
            "bm90LWEtdGltZXxub3QtYS11dWlk",  # base64 of "not-a-time|not-a-uuid"
            "MjAyNi0wMy0wMVQxMjowMDowMHwwMDAwMDAwMC0wMDAwLTAwMDAtMDAwMC0wMDAwMDAwMDAwMDA",  # a naive time
        ],
    )
    def test_anything_else_is_refused(self, cursor: str) -> None:
        """A cursor this list did not write is InvalidCursor."""
        with pytest.raises(InvalidCursor):
            Keyset.decode(cursor)

    async def test_the_router_answers_a_bad_cursor_with_its_reason(self, harness: Harness) -> None:
        """A query with a cursor that does not decode is answered ok=False with why, and lists nothing."""
        await put(harness.store, "alice")
        reply = await ask(harness, WorkflowListQuery(requester=ALICE, cursor="garbage"))
        assert not reply.ok and reply.workflows == [] and reply.error and "cursor" in reply.error


async def ask(harness: Harness, query: WorkflowListQuery) -> WorkflowListReply:
    reply = await harness.bus.request(Envelope.new(query, user_id=query.requester.user_id), timeout=WAIT_S)
    assert isinstance(reply.payload, WorkflowListReply)
    return reply.payload


# 20,000 workflows of 200 users over 20 days, a tenth sent from one of 20 accounts: enough that the planner's
# choice is the one production gets (on a few rows any plan is a sequential scan).
FILL = """
INSERT INTO hybrid_workflows (workflow_id, user_id, status, intent, provider_states, retry_attempts, version,
    created_at, updated_at, deadline_at, account_id)
SELECT gen_random_uuid(), 'user-' || (i % 200), (ARRAY['completed', 'failed', 'delivering'])[1 + i % 3],
    jsonb_build_object('type', (ARRAY['campaign_execution', 'message_generation'])[1 + i % 2]), '{}', '{}', 1,
    $1::timestamptz - i * interval '90 seconds', $1::timestamptz, $1::timestamptz,
    CASE WHEN i % 10 = 0 THEN 'account-' || (i / 10 % 20) END
FROM generate_series(1, 20000) AS i
"""


def _nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    children = plan.get("Plans", [])
    assert isinstance(children, list)
    return [plan, *(node for child in children for node in _nodes(child))]


@pytest.mark.integration
class TestQueryPlans:
    @pytest.fixture
    async def conn(self, postgres_dsn: str, pg_schema: str) -> asyncpg.Connection:
        store = PostgresStore(postgres_dsn, schema=pg_schema, pool_size=1)
        await store.start()  # the migrations
        await store.close()
        conn = await asyncpg.connect(postgres_dsn, server_settings={"search_path": pg_schema})
        await conn.execute(FILL, T0)
        await conn.execute("ANALYZE hybrid_workflows")
        yield conn
        await conn.close()

    async def plan(self, conn: asyncpg.Connection, where: WorkflowFilter) -> list[dict[str, object]]:
        statement, args = pg_sql.list_workflows(where, 51)
        explained = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {statement}", *args)
        document = explained if isinstance(explained, list) else json.loads(explained)
        return _nodes(document[0]["Plan"])

    @pytest.mark.parametrize(
        ("where", "index"),
        [
            (WorkflowFilter(user_id="user-7"), "hybrid_workflows_user_created"),
            (WorkflowFilter(user_id="root", is_admin=True), "hybrid_workflows_created"),
            (WorkflowFilter(user_id="root", is_admin=True, account_id="account-4"), "hybrid_workflows_account_created"),
            (WorkflowFilter(user_id="user-7", status=S.FAILED), "hybrid_workflows_user_created"),
        ],
        ids=["user", "admin", "admin-account", "user-status"],
    )
    async def test_a_page_is_an_index_scan_from_the_cursor(
        self, conn: asyncpg.Connection, where: WorkflowFilter, index: str
    ) -> None:
        """A later page of the user's and the admin's list reads the index from the cursor on (an index
        condition on (created_at, workflow_id)): no sequential scan, no sort of the table."""
        where = replace(where, after=Keyset(T0 - timedelta(days=3), uuid.uuid4()))
        nodes = await self.plan(conn, where)
        scans = [n for n in nodes if n.get("Index Name") == index]
        assert scans, nodes
        assert all(n["Node Type"] != "Seq Scan" for n in nodes), nodes
        assert any("created_at" in str(n.get("Index Cond", "")) for n in scans), scans

    async def test_an_account_members_list_reads_only_indexes(self, conn: asyncpg.Connection) -> None:
        """A user with accounts: their own rows and the accounts' rows, each from its index, no sequential scan."""
        where = WorkflowFilter(user_id="user-7", accounts=("account-4", "account-8"))
        nodes = await self.plan(conn, where)
        used = {n.get("Index Name") for n in nodes}
        assert {"hybrid_workflows_user_created", "hybrid_workflows_account_created"} <= used, nodes
        assert all(n["Node Type"] != "Seq Scan" for n in nodes), nodes
