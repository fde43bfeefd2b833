"""GET /api/v2/campaigns through the HTTP API, with the real router behind the gateway (memory store, and
PostgreSQL): who sees which workflows, every filter, pages by nextCursor, and 400 / 401 / 403 — each answer as
the OpenAPI document says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from contracts.enums import IntentType, WorkflowStatus
from contracts.routing import ROUTER
from libs.bus.memory import MemoryBus
from libs.runtime import Runtime
from services.gateway import make_token
from services.router.pg_store import PostgresStore
from services.router.service import build_router
from services.router.store import MemoryStore, WorkflowStore
from tests.gateway.conftest import ALICE, BOB, SECRET, Answer, Harness, MakeGateway
from tests.router.harness import router_settings
from tests.router.test_listing import T0, put

LIST = "/api/v2/campaigns"
S = WorkflowStatus


def token(user: str, *, accounts: list[str] | None = None, admin: bool = False) -> str:
    return make_token(SECRET, user, role="admin" if admin else None, accounts=accounts)


@pytest.fixture(params=[pytest.param("memory"), pytest.param("postgres", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowStore]:
    """The router's store: in memory, or on PostgreSQL in a throw-away schema."""
    instance: WorkflowStore
    if request.param == "memory":
        instance = MemoryStore()
    else:
        dsn = request.getfixturevalue("postgres_dsn")
        instance = PostgresStore(dsn, schema=request.getfixturevalue("pg_schema"), pool_size=2)
    await instance.start()
    yield instance
    await instance.close()


class Stack:
    def __init__(self, gw: Harness, store: WorkflowStore) -> None:
        self.gw, self.store = gw, store

    async def get(self, tok: str | None = None, **params: Any) -> Answer:
        return await self.gw.client.call("GET", LIST, token=tok or token(ALICE), params=params)

    async def ids(self, tok: str | None = None, **params: Any) -> list[str]:
        answer = await self.get(tok, **params)
        assert answer.status == 200, answer.body
        return [item["workflowId"] for item in answer.body["data"]["workflows"]]


@pytest.fixture
async def stack(make_gateway: MakeGateway, store: WorkflowStore) -> Stack:
    """A gateway in front of a real router on `store`."""
    bus = MemoryBus()
    gw = await make_gateway(bus=bus, router=False)
    settings = router_settings()
    router = build_router(Runtime(bus=bus, settings=settings), settings, store)
    await bus.subscribe(ROUTER, router.handlers())
    return Stack(gw, store)


def at(seconds: int) -> Any:
    return T0 + timedelta(seconds=seconds)


class TestList:
    async def test_a_user_gets_their_own_newest_first_with_each_fields(self, stack: Stack) -> None:
        """alice's two workflows, newest first, camelCase with deliveries counted for a campaign and an
        error for a failed one; bob's is not listed; one page (nextCursor null)."""
        failed = await put(stack.store, ALICE, at=at(0), status=S.FAILED)
        campaign = await put(stack.store, ALICE, at=at(1), account="creator-7", fans=2, status=S.DELIVERING)
        await put(stack.store, BOB, at=at(2))
        answer = await stack.get()
        assert answer.status == 200
        data = answer.body["data"]
        assert data["nextCursor"] is None
        top, second = data["workflows"]
        assert top["workflowId"] == str(campaign.workflow_id) and second["workflowId"] == str(failed.workflow_id)
        assert top["accountId"] == "creator-7" and top["userId"] == ALICE and top["status"] == "delivering"
        assert top["deliveries"] == {"total": 2, "sent": 0, "failed": 0, "cancelled": 0}
        assert top["intentType"] == "message_generation" and top["priority"] == "medium"
        assert second["deliveries"] is None and second["error"]["type"] == "provider_unavailable"
        assert second["completedAt"] is not None and second["retryOf"] is None

    async def test_an_account_member_and_an_admin(self, stack: Stack) -> None:
        """bob with creator-7 in his token sees alice's workflow sent from creator-7 (not her own); an admin
        sees every workflow."""
        from_account = await put(stack.store, ALICE, at=at(0), account="creator-7")
        own = await put(stack.store, ALICE, at=at(1))
        bobs = await put(stack.store, BOB, at=at(2))
        member = token(BOB, accounts=["creator-7"])
        assert await stack.ids(member) == [str(bobs.workflow_id), str(from_account.workflow_id)]
        everyone = [str(w.workflow_id) for w in (bobs, own, from_account)]
        assert await stack.ids(token("root", admin=True)) == everyone

    async def test_every_filter(self, stack: Stack) -> None:
        """status, type, accountId (the account sent from: the sub for one without an account) and
        from (inclusive) / to (exclusive; a day alone includes the day) each narrow the list."""
        plain = await put(stack.store, ALICE, at=at(0), status=S.FAILED)
        campaign = await put(stack.store, ALICE, at=at(60), kind=IntentType.CAMPAIGN_EXECUTION, account="creator-7")
        later = await put(stack.store, ALICE, at=T0 + timedelta(days=1), status=S.COMPLETED)
        tok = token(ALICE, accounts=["creator-7"])
        assert await stack.ids(tok, status="failed") == [str(plain.workflow_id)]
        assert await stack.ids(tok, type="campaign_execution") == [str(campaign.workflow_id)]
        assert await stack.ids(tok, accountId="creator-7") == [str(campaign.workflow_id)]
        assert await stack.ids(tok, accountId=ALICE) == [str(later.workflow_id), str(plain.workflow_id)]
        assert await stack.ids(tok, **{"from": at(60).isoformat()}) == [
            str(later.workflow_id),
            str(campaign.workflow_id),
        ]
        assert await stack.ids(tok, to=at(60).isoformat()) == [str(plain.workflow_id)]
        day = T0.date().isoformat()
        assert await stack.ids(tok, **{"from": day, "to": day}) == [str(campaign.workflow_id), str(plain.workflow_id)]

    async def test_pages_by_next_cursor(self, stack: Stack) -> None:
        """Five workflows, three created in the same microsecond, limit 2: pages of 2, 2 and 1, each workflow
        once, the last page without a nextCursor."""
        made = [await put(stack.store, ALICE, at=at(1)) for _ in range(3)]
        made += [await put(stack.store, ALICE, at=at(0)), await put(stack.store, ALICE, at=at(2))]
        expected = [made[4], *sorted(made[:3], key=lambda w: w.workflow_id, reverse=True), made[3]]
        seen: list[str] = []
        sizes: list[int] = []
        cursor: str | None = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            answer = await stack.get(**params)
            assert answer.status == 200
            page = answer.body["data"]
            sizes.append(len(page["workflows"]))
            seen += [item["workflowId"] for item in page["workflows"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert sizes == [2, 2, 1]
        assert seen == [str(w.workflow_id) for w in expected]


class TestRefused:
    @pytest.mark.parametrize(
        ("params", "named"),
        [
            ({"status": "done"}, "status"),
            ({"accountId": "../admin"}, "accountId"),
            ({"type": "spam"}, "type"),
            ({"from": "yesterday"}, "from"),
            ({"from": "2026-03-01T00:00:00"}, "from"),  # no offset
            ({"to": "2026-13-01"}, "to"),
            ({"from": "2026-03-02", "to": "2026-03-01"}, "from"),
            ({"cursor": "garbage"}, "cursor"),  # the router says it is not one of its cursors
            ({"cursor": "x" * 201}, "cursor"),
            ({"limit": "0"}, "limit"),
            ({"limit": "501"}, "limit"),
            ({"limit": "ten"}, "limit"),
            ({"acountId": ALICE}, "acountId"),
        ],
    )
    async def test_a_bad_parameter_is_400_naming_it(self, stack: Stack, params: dict[str, str], named: str) -> None:
        """Each bad parameter answers 400 invalid_parameter with its name in the message."""
        answer = await stack.get(**params)
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")
        assert named in answer.body["error"]["message"]

    async def test_a_parameter_given_twice_is_400(self, stack: Stack) -> None:
        """status=failed&status=completed is refused, not read as one of them."""
        twice = [("status", "failed"), ("status", "completed")]
        answer = await stack.gw.client.call("GET", LIST, token=token(ALICE), params=twice)
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")

    async def test_no_token_is_401(self, stack: Stack) -> None:
        """Without a token: 401 missing_token."""
        answer = await stack.gw.client.call("GET", LIST, user=None)
        assert (answer.status, answer.body["error"]["code"]) == (401, "missing_token")

    async def test_someone_elses_account_is_403(self, stack: Stack) -> None:
        """accountId neither the sub nor in `accounts`: 403; the sub, an account of the claim, or any account
        for an admin: 200."""
        await put(stack.store, BOB, account="creator-7")
        for tok in (token(ALICE), token(ALICE, accounts=["creator-8"])):
            answer = await stack.get(tok, accountId="creator-7")
            assert (answer.status, answer.body["error"]["code"]) == (403, "forbidden")
        assert len(await stack.ids(token(ALICE, accounts=["creator-7"]), accountId="creator-7")) == 1
        assert len(await stack.ids(token("root", admin=True), accountId="creator-7")) == 1
        assert await stack.ids(token(ALICE), accountId=ALICE) == []
