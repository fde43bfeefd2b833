"""Campaigns end to end on the memory bus (router → rate-limiter → of-sender → platform simulator → router):
a thousand fans each reached once with truthful progress, and a personalized campaign whose one
ungeneratable text fails one delivery, not the campaign, at a bounded number of generations in flight."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from contracts import Envelope, Message
from contracts.enums import DeliveryState, ErrorType, Provider, WorkflowStatus
from contracts.messages import DeliveryRequested, Recipient, WorkflowCompleted, WorkflowFanout
from libs.simulators import PlatformLimits, PlatformSimulator
from services.router.constants import FANOUT_CHUNK
from tests.delivery.harness import DeliveryHarness, campaign, personal_text
from tests.router.harness import Call, Outcome, fail

D = DeliveryState
FANS = 1_000
CREATOR = "creator-1"
FINISH_TIMEOUT_S = 60.0  # about 5 s alone on two cores; much more on a machine busy with other suites
# Limits lifted (the rate-limiter and the of-sender's last check still run for every delivery): a thousand
# sends fit in a few seconds. The window stays short: on a fresh plan an account is held for one window.
LIFTED = {
    "of_account_limit": 100_000,
    "of_account_window_s": 0.5,
    "of_recipient_min_interval_s": 0.0,
    "of_safety_margin_s": 0.0,
}


@pytest.fixture
async def sim() -> AsyncIterator[PlatformSimulator]:
    limits = PlatformLimits(account_limit=100_000, window_s=0.5, recipient_min_interval_s=0.0)
    async with PlatformSimulator(limits) as s:
        yield s


@pytest.fixture
async def h(sim: PlatformSimulator) -> AsyncIterator[DeliveryHarness]:
    harness = await DeliveryHarness.start(sim, limits=LIFTED)
    yield harness
    await harness.close()


class TestLargeCampaign:
    async def test_a_thousand_fans_are_each_reached_once(self, h: DeliveryHarness) -> None:
        """1,000 fans: every fan gets the text exactly once on the platform, the fan-out went in chunks of
        FANOUT_CHUNK, and the workflow completes with progress {total: 1000, sent: 1000, failed: 0}."""
        fans = [f"fan-{i}" for i in range(FANS)]
        started = time.monotonic()
        accepted = await h.pipeline.request(campaign(*fans), user=CREATOR, deadline_s=60)
        assert accepted.workflow is not None
        finished = await h.pipeline.sink.wait(accepted.workflow.workflow_id, timeout=FINISH_TIMEOUT_S)
        elapsed = time.monotonic() - started
        view = await h.pipeline.view(accepted.workflow.workflow_id)
        assert isinstance(finished.payload, WorkflowCompleted) and view.status is WorkflowStatus.COMPLETED
        reached = Counter(a.recipient_id for a in h.sim.delivered())
        assert reached == Counter(fans), f"missed {set(fans) - set(reached)}, twice {reached - Counter(fans)}"
        assert {a.outcome for a in h.sim.arrivals()} == {"sent"}
        assert {a.text for a in h.sim.delivered()} == {view.result}
        assert finished.payload.deliveries is not None
        assert (finished.payload.deliveries.total, finished.payload.deliveries.sent) == (FANS, FANS)
        status = await h.pipeline.status(view.workflow_id, CREATOR)
        assert status.workflow is not None and status.workflow.progress is not None
        progress = status.workflow.progress
        assert (progress.total, progress.generated, progress.scheduled) == (FANS, FANS, FANS)
        assert (progress.sent, progress.failed, progress.cancelled) == (FANS, 0, 0)
        assert status.workflow.deliveries == []  # too many to list: paged instead
        fanouts = list({f.id: f for f in h.bus.of_type(WorkflowFanout, view.workflow_id)}.values())  # paced: again
        assert [f.payload.from_seq for f in fanouts] == list(range(0, FANS, FANOUT_CHUNK))  # type: ignore[attr-defined]
        requested = Counter(e.causation_id for e in h.bus.of_type(DeliveryRequested, view.workflow_id))
        assert set(requested.values()) == {FANOUT_CHUNK}
        print(f"\n{FANS} fans delivered in {elapsed:.1f}s")


class InFlight:
    """Wraps a fake worker's outcome: when each request arrived (FakeWorkers.calls) and when it was
    answered, so the most generation requests held at once can be counted."""

    def __init__(self, outcome: Outcome, after_s: float) -> None:
        self.outcome = outcome
        self.after_s = after_s  # FakeWorkers waits this long before answering: requests overlap
        self.answered: dict[uuid.UUID, float] = {}

    def __call__(self, request: Envelope) -> Message | None:
        self.answered[request.id] = time.monotonic()
        return self.outcome(request)

    def peak(self, calls: list[Call]) -> int:
        events = [(c.at, 1) for c in calls] + [(self.answered[c.request.id], -1) for c in calls]
        held = most = 0
        for _, step in sorted(events):
            held += step
            most = max(most, held)
        return most


class TestPersonalizedCampaign:
    async def test_an_ungeneratable_text_fails_one_delivery_not_the_campaign(self, h: DeliveryHarness) -> None:
        """Forty fans with a text each; one fan's text always fails: the campaign completes with failed=1,
        that fan's delivery failed with the reason (attempts spent), the others sent their own text — and
        never more than CAMPAIGN_GENERATION_CONCURRENCY generations were in flight."""
        settings = h.pipeline.router.engine.settings
        doomed = "fan-7"
        failing = fail(ErrorType.PROVIDER_UNAVAILABLE)

        def answer(request: Envelope) -> Message | None:
            unlucky = request.payload.recipient_id == doomed  # type: ignore[attr-defined]
            return failing(request) if unlucky else personal_text(request)

        gauge = InFlight(answer, after_s=0.03)
        for provider in Provider:
            h.pipeline.workers.script(provider, gauge)
        fans = [Recipient(id=f"fan-{i}", vars={"name": f"Fan {i}"}) for i in range(40)]
        intent = campaign(data={"personalize": True})
        view, finished = await h.run(intent, user=CREATOR, recipients=tuple(fans), deadline_s=30)
        assert isinstance(finished.payload, WorkflowCompleted) and view.status is WorkflowStatus.COMPLETED
        assert finished.payload.deliveries is not None
        assert (finished.payload.deliveries.sent, finished.payload.deliveries.failed) == (39, 1)
        assert view.progress is not None and (view.progress.generated, view.progress.failed) == (39, 1)
        [lost] = [d for d in view.deliveries if d.status is D.FAILED]
        assert lost.recipient_id == doomed and lost.error is not None
        assert f"all {settings.router_max_attempts} attempts spent" in lost.error.message
        assert "scripted provider_unavailable" in lost.error.message
        assert view.error is not None and "1 of 40 deliveries failed" in view.error.message
        delivered = {a.recipient_id: a.text for a in h.sim.delivered()}
        assert delivered == {f.id: f"hello {f.id}" for f in fans if f.id != doomed}
        calls = h.pipeline.workers.calls[Provider.AZURE] + h.pipeline.workers.calls[Provider.OPENAI]
        asked = Counter(c.request.payload.recipient_id for c in calls)  # type: ignore[attr-defined]
        assert asked[doomed] == settings.router_max_attempts and all(asked[f.id] == 1 for f in fans[:7])
        peak = gauge.peak(calls)
        assert 1 < peak <= settings.campaign_generation_concurrency, peak
