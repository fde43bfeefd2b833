"""`ho flags` and `ho workflows` against a real gateway (memory bus; the real router behind it for workflows),
the way an operator calls them: --url/--token or HO_URL/HO_TOKEN, JSON answers, one line for an HTTP error."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.cli.conftest import Ran, ho, printed
from tests.gateway.conftest import ALICE, BOB, PLAN, Harness, MakeGateway
from tests.gateway.test_control import CAMPAIGN_BODY, Stack, token

pytestmark = pytest.mark.integration


def answer(ran: Ran) -> Any:
    """The JSON `ho` printed: from its first line to its last (the gateway runs in this process too, and its
    request logs share stdout; they start with a timestamp)."""
    assert ran.code == 0 and ran.err == "", ran
    lines = ran.out.splitlines()
    first = next(i for i, line in enumerate(lines) if line in ("{", "["))
    last = max(i for i, line in enumerate(lines) if line in ("}", "]"))
    return json.loads("\n".join(lines[first : last + 1]))


class TestFlags:
    async def test_get_and_set(
        self, make_gateway: MakeGateway, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HO_URL/HO_TOKEN reach the gateway; `set` changes the flags given and the gateway obeys at once."""
        gw = await make_gateway()
        monkeypatch.setenv("HO_URL", gw.url)
        monkeypatch.setenv("HO_TOKEN", token("ops", admin=True))
        flags = answer(await asyncio.to_thread(ho, capsys, "flags", "get"))
        assert flags == {**flags, "hybridOrchestratorEnabled": True, "rolloutPercentage": 100, "version": 0}

        changed = answer(
            await asyncio.to_thread(
                ho, capsys, "flags", "set", "--enabled", "false", "--rollout", "25", "--allow", "bob,carol"
            )
        )
        assert changed == {
            **changed,
            "hybridOrchestratorEnabled": False,
            "rolloutPercentage": 25,
            "allowList": ["bob", "carol"],
            "version": 1,
            "updatedBy": "ops",
        }
        refused = await gw.client.post(PLAN)
        assert (refused.status, refused.body["error"]["code"]) == (503, "disabled")

    async def test_a_users_token_is_one_error_line(self, gw: Harness, capsys: pytest.CaptureFixture[str]) -> None:
        """A non-admin token: exit 1 and `ho: 403 forbidden: <the gateway's message>`, no answer printed."""
        ran = await asyncio.to_thread(ho, capsys, "flags", "get", "--url", gw.url, "--token", token(ALICE))
        assert ran.code == 1 and "{" not in ran.out
        assert ran.err.startswith("ho: 403 forbidden: ") and len(ran.err.splitlines()) == 1

    async def test_no_token(
        self, gw: Harness, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without --token or HO_TOKEN the gateway's 401 is the line."""
        monkeypatch.delenv("HO_TOKEN", raising=False)
        ran = await asyncio.to_thread(ho, capsys, "flags", "get", "--url", gw.url)
        assert ran.code == 1 and ran.err.startswith("ho: 401 missing_token: ")

    def test_set_needs_a_change(self, capsys: pytest.CaptureFixture[str]) -> None:
        """`flags set` with nothing to change is a usage error (exit 2) before any request."""
        ran = ho(capsys, "flags", "set", "--url", "http://127.0.0.1:1")
        assert ran.code == 2 and "give at least one of --enabled, --rollout, --allow" in ran.err

    def test_unreachable_gateway(self, capsys: pytest.CaptureFixture[str]) -> None:
        """Nothing listening at --url: exit 1 and one line saying so."""
        ran = ho(capsys, "flags", "get", "--url", "http://127.0.0.1:1", "--token", "x")
        assert ran.code == 1 and ran.err.startswith("ho: cannot reach the gateway at http://127.0.0.1:1: ")
        assert len(ran.err.splitlines()) == 1


class TestWorkflows:
    async def test_show_and_cancel(self, stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
        """`show` prints the workflow's state; `cancel` cancels it (its owner) and says how many were sent;
        cancelling again is the gateway's 409 as one line."""
        alice = token(ALICE)
        workflow_id = await stack.delivering({**CAMPAIGN_BODY, "recipientIds": ["fan-1", "fan-2"]}, alice)
        url = stack.gw.url
        shown = answer(
            await asyncio.to_thread(ho, capsys, "workflows", "show", workflow_id, "--url", url, "--token", alice)
        )
        assert isinstance(shown, dict) and (shown["workflowId"], shown["status"]) == (workflow_id, "delivering")

        cancelled = answer(
            await asyncio.to_thread(ho, capsys, "workflows", "cancel", workflow_id, "--url", url, "--token", alice)
        )
        assert isinstance(cancelled, dict)
        assert (cancelled["workflow"]["status"], cancelled["sentBefore"]) == ("cancelled", 0)
        assert await stack.status(workflow_id, alice) == "cancelled"

        again = await asyncio.to_thread(ho, capsys, "workflows", "cancel", workflow_id, "--url", url, "--token", alice)
        assert again.code == 1 and again.err.startswith("ho: 409 already_finished: ")

    async def test_someone_elses_workflow(self, stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
        """Another user's workflow: `show` is the gateway's 404, `cancel` its 403, each one line and exit 1."""
        workflow_id = await stack.start({**CAMPAIGN_BODY, "recipientIds": ["fan-1"]}, token(ALICE))
        argv = ("--url", stack.gw.url, "--token", token(BOB))
        shown = await asyncio.to_thread(ho, capsys, "workflows", "show", workflow_id, *argv)
        assert shown.code == 1 and shown.err.startswith("ho: 404 not_found: ")
        cancelled = await asyncio.to_thread(ho, capsys, "workflows", "cancel", workflow_id, *argv)
        assert cancelled.code == 1 and cancelled.err.startswith("ho: 403 forbidden: ")
        assert len(shown.err.splitlines()) == len(cancelled.err.splitlines()) == 1
        assert await stack.status(workflow_id, token(ALICE)) != "cancelled"


class TestWorkflowList:
    async def test_pages_filters_and_json(self, stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
        """A table a page at a time (the last line gives the next --cursor), filters passed on, --json whole."""
        alice = token(ALICE)
        first = await stack.delivering({**CAMPAIGN_BODY, "recipientIds": ["fan-1"]}, alice)
        second = await stack.delivering({**CAMPAIGN_BODY, "recipientIds": ["fan-2"]}, alice)
        argv = ("--url", stack.gw.url, "--token", alice)

        page = await asyncio.to_thread(ho, capsys, "workflows", "list", "--limit", "1", *argv)
        assert page.code == 0 and page.err == "", page
        header, row, more = printed(page.out)
        assert header.split() == [
            "workflowId",
            "status",
            "intentType",
            "accountId",
            "userId",
            "createdAt",
            "completedAt",
        ]
        assert row.split()[:3] == [second, "delivering", "campaign_execution"]  # newest first
        assert more.startswith("next page: --cursor ")
        cursor = more.removeprefix("next page: --cursor ")
        page = await asyncio.to_thread(ho, capsys, "workflows", "list", "--limit", "1", "--cursor", cursor, *argv)
        assert printed(page.out)[1].split()[0] == first

        await asyncio.to_thread(ho, capsys, "workflows", "cancel", first, *argv)
        listed = await asyncio.to_thread(
            ho, capsys, "workflows", "list", "--status", "cancelled", "--type", "campaign_execution", "--json", *argv
        )
        data = answer(listed)
        assert [w["workflowId"] for w in data["workflows"]] == [first] and data["nextCursor"] is None

        theirs = await asyncio.to_thread(ho, capsys, "workflows", "list", "--url", stack.gw.url, "--token", token(BOB))
        assert printed(theirs.out) == ["(none)"]

    async def test_a_foreign_account_is_one_error_line(self, stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
        """--account outside the token's sub and accounts: the gateway's 403 as one line, exit 1."""
        ran = await asyncio.to_thread(
            ho, capsys, "workflows", "list", "--account", "acct-x", "--url", stack.gw.url, "--token", token(ALICE)
        )
        assert ran.code == 1 and ran.err.startswith("ho: 403 forbidden: ") and len(ran.err.splitlines()) == 1

    async def test_a_bad_filter_is_the_gateways_400(self, stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
        """A status the API does not know is refused by the gateway (400 naming it), not guessed at by ho."""
        ran = await asyncio.to_thread(
            ho, capsys, "workflows", "list", "--status", "sleeping", "--url", stack.gw.url, "--token", token(ALICE)
        )
        assert ran.code == 1 and ran.err.startswith("ho: 400 invalid_parameter: ") and "status" in ran.err
