"""Pausing and resuming a creator account through the gateway's admin API: the paused set in the flags, who
may change it, which ids it takes, and every gateway sharing the store seeing it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from libs.flags import MemoryFlagStore
from libs.flags import constants as fc
from libs.runtime import Shared
from services.gateway.flag_routes import PATH_ACCOUNT_PAUSE, PATH_ACCOUNT_RESUME
from tests.gateway.conftest import ALICE, Answer, Harness, MakeGateway

FLAGS = "/api/admin/feature-flags"
ROOT = "root"


async def change(gw: Harness, template: str, account: str, **kwargs: Any) -> Answer:
    """PUT the pause or resume route of `account`, checked against the document's template path."""
    kwargs.setdefault("user", ROOT)
    kwargs.setdefault("role", "admin")
    path = template.replace("{accountId}", quote(account, safe=""))
    answer = await gw.client.call("PUT", path, documented=False, **kwargs)
    gw.client.check_documented("PUT", template, answer)
    return answer


async def paused_accounts(gw: Harness) -> list[str]:
    answer = await gw.client.call("GET", FLAGS, user=ROOT, role="admin")
    assert answer.status == 200
    accounts: list[str] = answer.body["data"]["pausedAccounts"]
    return accounts


class TestPauseResume:
    async def test_pause_and_resume_answer_the_account_and_the_version(self, gw: Harness) -> None:
        """Pause: paused, version 1, listed in the flags; again: no change; resume: not paused, version 2."""
        answer = await change(gw, PATH_ACCOUNT_PAUSE, "creator.acct-1")
        assert answer.status == 200
        data = answer.body["data"]
        assert (data["accountId"], data["paused"], data["version"], data["updatedBy"]) == (
            "creator.acct-1",
            True,
            1,
            ROOT,
        )
        assert await paused_accounts(gw) == ["creator.acct-1"]
        assert (await change(gw, PATH_ACCOUNT_PAUSE, "creator.acct-1")).body["data"]["version"] == 1
        resumed = (await change(gw, PATH_ACCOUNT_RESUME, "creator.acct-1")).body["data"]
        assert (resumed["paused"], resumed["version"]) == (False, 2)
        assert await paused_accounts(gw) == []

    async def test_only_an_admin_may_pause(self, gw: Harness) -> None:
        """A user's token answers 403 forbidden, none 401; nothing is paused."""
        assert (await change(gw, PATH_ACCOUNT_PAUSE, "acct", user=ALICE, role=None)).status == 403
        assert (await change(gw, PATH_ACCOUNT_RESUME, "acct", user=ALICE, role=None)).status == 403
        assert (await change(gw, PATH_ACCOUNT_PAUSE, "acct", user=None, role=None)).status == 401
        assert await paused_accounts(gw) == []

    @pytest.mark.parametrize("account", ["...", "a b", "acct/x", "é", "x" * 129])
    async def test_an_id_outside_the_platform_pattern_is_400(self, gw: Harness, account: str) -> None:
        """Only dots, a space, a slash, a non-ASCII letter, or too long: 400 invalid_parameter."""
        answer = await change(gw, PATH_ACCOUNT_PAUSE, account)
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")
        assert await paused_accounts(gw) == []

    async def test_a_full_paused_set_is_409(self, make_gateway: MakeGateway) -> None:
        """At the flags' bound of paused accounts, one more answers 409 paused_accounts_full."""
        store = MemoryFlagStore()
        gw = await make_gateway(shared=Shared(flag_store=store))
        full = [f"a{i}" for i in range(fc.MAX_PAUSED_ACCOUNTS)]
        await store.write(
            {fc.PAUSED_ACCOUNTS: orjson.dumps(full).decode()}, updated_at=datetime.now(UTC), updated_by="x"
        )
        answer = await change(gw, PATH_ACCOUNT_PAUSE, "one-more")
        assert (answer.status, answer.body["error"]["code"]) == (409, "paused_accounts_full")

    async def test_a_pause_on_one_gateway_is_seen_by_another(self, make_gateway: MakeGateway) -> None:
        """Two gateways on one store: a pause through one is listed by the other."""
        store = MemoryFlagStore()
        a = await make_gateway(shared=Shared(flag_store=store))
        b = await make_gateway(shared=Shared(flag_store=store))
        await change(a, PATH_ACCOUNT_PAUSE, "acct-7")
        assert await paused_accounts(b) == ["acct-7"]
