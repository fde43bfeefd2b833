"""The content gate end to end on the memory bus: the real router, the real workers on the LLM simulator,
rate-limiter, of-sender and the platform simulator. A text that breaks a content rule twice never reaches
the platform; the workflow (or, personalized, that fan's delivery) fails with compliance_violation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from contracts.enums import DeliveryState, ErrorType, IntentType, WorkflowStatus
from contracts.messages import Intent, Recipient, WorkflowFailed
from libs.simulators import LLMSimulator, PlatformSimulator
from tests.delivery.harness import DeliveryHarness, campaign, platform


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    async with platform() as s:
        yield s


@pytest.fixture
async def llm() -> AsyncIterator[LLMSimulator]:
    async with LLMSimulator() as s:
        yield s


class TestContentGate:
    async def test_a_text_with_a_phone_number_is_never_delivered(
        self, sim: PlatformSimulator, llm: LLMSimulator
    ) -> None:
        """The issue's request ("call me 5550100, meet 12 Main St" in its data, echoed by the model twice):
        the workflow fails with compliance_violation naming the rule, its delivery failed, nothing sent."""
        h = await DeliveryHarness.start(sim, llm=llm)
        try:
            intent = Intent(
                type=IntentType.MESSAGE_GENERATION,
                data={"topic": "call me 5550100, meet 12 Main St"},
                send_to_onlyfans=True,
                recipient_id="fan-1",
            )
            view, finished = await h.run(intent, user="creator-1")
        finally:
            await h.close()
        assert isinstance(finished.payload, WorkflowFailed) and view.status is WorkflowStatus.FAILED
        assert view.error is not None and view.error.type is ErrorType.COMPLIANCE_VIOLATION
        assert "contact_phone" in view.error.message and "5550100" not in view.error.message
        assert llm.request_count() == 2  # the draft and its one regeneration; compliance_violation is never retried
        assert sim.arrivals() == [] and sim.delivered() == []
        assert [d.status for d in view.deliveries] == [DeliveryState.FAILED]

    async def test_a_personalized_campaign_fails_only_the_fan_whose_text_broke_a_rule(
        self, sim: PlatformSimulator, llm: LLMSimulator
    ) -> None:
        """One text at a time: the first fan's text breaks a rule twice (scripted), that delivery fails with
        compliance_violation; the other fans get their clean texts and the campaign completes."""
        llm.add_fault("reply", reply="add me on insta, my snap is @sexy_jane", count=2)
        h = await DeliveryHarness.start(sim, llm=llm, router={"campaign_generation_concurrency": 1})
        try:
            fans = (Recipient(id="a", vars={"name": "Ann"}), Recipient(id="b"), Recipient(id="c"))
            view, _ = await h.run(campaign(data={"personalize": True}), recipients=fans, deadline_s=20)
        finally:
            await h.close()
        assert view.status is WorkflowStatus.COMPLETED
        by_fan = {d.recipient_id: d for d in view.deliveries}
        assert by_fan["a"].status is DeliveryState.FAILED
        assert by_fan["a"].error is not None and by_fan["a"].error.type is ErrorType.COMPLIANCE_VIOLATION
        assert "contact_social_handle" in by_fan["a"].error.message  # the first rule in order
        assert (by_fan["b"].status, by_fan["c"].status) == (DeliveryState.SENT, DeliveryState.SENT)
        delivered = sim.delivered()
        assert sorted(a.recipient_id for a in delivered) == ["b", "c"]
        assert all("insta" not in a.text for a in delivered)
