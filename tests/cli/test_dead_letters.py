"""`ho dlq list|replay` against a real gateway on the memory bus, with a router handler that rejects what it
gets (so it is dead-lettered at once) until told to accept it."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest

from contracts import Envelope
from contracts import messages as m
from contracts.routing import ROUTER
from tests.cli.conftest import ho, printed
from tests.gateway.conftest import ALICE, Harness, MakeGateway
from tests.gateway.test_control import token
from tests.gateway.test_dead_letters import Worker

pytestmark = pytest.mark.integration


@pytest.fixture
async def dead(make_gateway: MakeGateway, monkeypatch: pytest.MonkeyPatch) -> tuple[Harness, Worker, Envelope]:
    """A gateway whose router rejects, one workflow.requested dead-lettered, HO_URL/HO_TOKEN (admin) set."""
    gw = await make_gateway(router=False)
    worker = Worker()
    await gw.bus.subscribe(ROUTER, {"workflow.requested": worker})
    intent = m.Intent(type="message_generation", data={"text": "hi fan", "apiKey": "sk-secret-1"})
    envelope = Envelope.new(m.WorkflowRequested(intent=intent), workflow_id=uuid.uuid4(), user_id=ALICE)
    await gw.bus.publish(envelope)
    for _ in range(100):
        if await gw.bus.dead_letter_depth(ROUTER):
            break
        await asyncio.sleep(0.05)
    monkeypatch.setenv("HO_URL", gw.url)
    monkeypatch.setenv("HO_TOKEN", token("ops", admin=True))
    return gw, worker, envelope


class TestDeadLetters:
    async def test_list_as_a_table_and_as_json(
        self, dead: tuple[Harness, Worker, Envelope], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The table has id, type, reason, age, workflow id and the depth; --json the redacted preview too."""
        _, _, envelope = dead
        ran = await asyncio.to_thread(ho, capsys, "dlq", "list", "--service", ROUTER)
        assert ran.code == 0 and ran.err == "", ran
        header, row, depth = printed(ran.out)
        assert header.split() == ["id", "type", "reason", "ageS", "workflowId", "replays"]
        assert row.split()[:2] == [str(envelope.id), "workflow.requested"] and str(envelope.workflow_id) in row
        assert "rejected: attempt 1" in row and depth == "depth: 1"

        ran = await asyncio.to_thread(ho, capsys, "dlq", "list", "--service", ROUTER, "--limit", "5", "--json")
        text = "\n".join(printed(ran.out))
        data = json.loads(text)
        assert [item["id"] for item in data["deadLetters"]] == [str(envelope.id)]
        assert "sk-secret-1" not in text and "hi fan" not in text

    async def test_replay_one_then_none_left(
        self, dead: tuple[Harness, Worker, Envelope], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`replay --id` hands the message to its service again; accepted this time, the queue is empty."""
        gw, worker, envelope = dead
        worker.failing = False
        ran = await asyncio.to_thread(ho, capsys, "dlq", "replay", "--service", ROUTER, "--id", str(envelope.id))
        assert ran.code == 0, ran
        assert json.loads("\n".join(printed(ran.out)))["replayed"] == 1
        for _ in range(100):
            if len(worker.seen) == 2:
                break
            await asyncio.sleep(0.05)
        assert [e.id for e in worker.seen] == [envelope.id, envelope.id]
        assert await gw.bus.dead_letter_depth(ROUTER) == 0

    async def test_replay_all_that_fails_again_comes_back(
        self, dead: tuple[Harness, Worker, Envelope], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """`replay --all` while the handler still rejects: the dead letter is back with its new reason, once."""
        gw, worker, _ = dead
        ran = await asyncio.to_thread(ho, capsys, "dlq", "replay", "--service", ROUTER, "--all")
        assert ran.code == 0 and json.loads("\n".join(printed(ran.out)))["replayed"] == 1
        for _ in range(100):
            if len(worker.seen) == 2 and await gw.bus.dead_letter_depth(ROUTER) == 1:
                break
            await asyncio.sleep(0.05)
        listed = await asyncio.to_thread(ho, capsys, "dlq", "list", "--service", ROUTER, "--json")
        (item,) = json.loads("\n".join(printed(listed.out)))["deadLetters"]
        assert (item["reason"], item["replays"]) == ("rejected: attempt 2", 1)

    async def test_bad_service_and_exclusive_options(
        self, dead: tuple[Harness, Worker, Envelope], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An unknown service is the gateway's 400 as one line; --id with --all is a usage error."""
        ran = await asyncio.to_thread(ho, capsys, "dlq", "replay", "--service", "nobody", "--all")
        assert ran.code == 1 and ran.err.startswith("ho: 400 ") and len(ran.err.splitlines()) == 1
        assert ho(capsys, "dlq", "replay", "--service", ROUTER, "--id", "x", "--all").code == 2
        assert ho(capsys, "dlq", "replay", "--service", ROUTER).code == 2
