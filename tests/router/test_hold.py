"""Deadlines while work is held: with the kill switch off, or a delivering workflow's account paused, the
router moves the deadline on instead of failing the workflow; once the work may go on, the deadline ends it
as before."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from contracts.enums import WorkflowStatus
from libs.flags import FlagClient, FlagSettings, FlagUpdate, MemoryFlagStore, open_flag_client
from services.router.store import WorkflowStore
from tests.fixtures.waiting import eventually
from tests.router.harness import Harness, router_settings
from tests.router.test_campaigns import answer_deliveries, campaign, delivering

SHORT = {"router_workflow_deadline_s": 1.0, "router_delivery_grace_s": 0.2}


@pytest.fixture
async def flags() -> AsyncIterator[FlagClient]:
    client = open_flag_client(FlagSettings(redis_url=None), store=MemoryFlagStore())
    await client.start()
    yield client
    await client.stop()


@pytest.fixture
async def held_harness(store: WorkflowStore, flags: FlagClient) -> AsyncIterator[Harness]:
    running = await Harness.start(store, router_settings(**SHORT), flags)
    yield running
    await running.close()


async def status_after(harness: Harness, workflow_id: object, seconds: float) -> WorkflowStatus:
    await asyncio.sleep(seconds)
    workflow = await harness.store.get(workflow_id)  # type: ignore[arg-type]
    assert workflow is not None
    return workflow.status


class TestDeadlineHeld:
    async def test_the_kill_switch_keeps_a_delivering_campaign_from_failing(
        self, held_harness: Harness, flags: FlagClient
    ) -> None:
        """Off: past its deadline the campaign is still delivering (deadline_held); on: the deadline ends it."""
        await answer_deliveries(held_harness, skip=lambda fan: True)
        workflow_id = await delivering(held_harness, campaign(2))
        await flags.update(FlagUpdate(hybrid_orchestrator_enabled=False), updated_by="ops")
        assert await status_after(held_harness, workflow_id, 2.0) is WorkflowStatus.DELIVERING
        events = [e.name for e in await held_harness.store.history(workflow_id)]
        assert "deadline_held" in events
        workflow = await held_harness.store.get(workflow_id)
        assert workflow is not None
        # Back on: the next deadline (moved DEADLINE_HOLD_S on) is brought forward to see it end as before.
        await flags.update(FlagUpdate(hybrid_orchestrator_enabled=True), updated_by="ops")
        held_harness.router.clock = lambda: workflow.deadline_at + (workflow.deadline_at - workflow.created_at) * 100

        async def ended() -> bool:
            current = await held_harness.store.get(workflow_id)
            return current is not None and current.status is WorkflowStatus.FAILED

        await eventually(ended, timeout=5)

    async def test_a_paused_account_holds_only_its_own_campaigns(
        self, held_harness: Harness, flags: FlagClient
    ) -> None:
        """creator-1 paused: its campaign outlives its deadline; creator-2's fails at its deadline."""
        await answer_deliveries(held_harness, skip=lambda fan: True)
        await flags.set_paused("creator-1", True, updated_by="ops")
        paused = await delivering(held_harness, campaign(1), account_id="creator-1")
        other = await delivering(held_harness, campaign(1, prefix="other"), account_id="creator-2")
        await asyncio.sleep(2.0)
        assert await status_after(held_harness, paused, 0) is WorkflowStatus.DELIVERING
        assert await status_after(held_harness, other, 0) is WorkflowStatus.FAILED
