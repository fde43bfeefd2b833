"""The workflow state machine: legal transitions apply and are recorded; illegal ones raise."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from contracts import Envelope
from contracts.enums import IntentType, Provider, WorkflowStatus
from contracts.messages import GenerationCompleted, Intent, Usage, WorkflowTimer
from services.router.constants import (
    FANOUT_AHEAD,
    FANOUT_CHUNK,
    FANOUT_RECHECK_GROWTH,
    FANOUT_RECHECK_MAX_S,
    FANOUT_RECHECK_S,
)
from services.router.delivery import DeliveryDecisions
from services.router.engine import Engine
from services.router.errors import IllegalTransition
from services.router.state import TERMINAL, TRANSITIONS, Change, Tally, Workflow
from tests.router.harness import router_settings

S = WorkflowStatus
NOW = datetime(2025, 1, 1, tzinfo=UTC)


def workflow(status: WorkflowStatus = S.GENERATING, **fields: object) -> Workflow:
    return Workflow(
        workflow_id=uuid.uuid4(),
        user_id="u",
        intent=Intent(type=IntentType.MESSAGE_GENERATION),
        status=status,
        created_at=NOW,
        updated_at=NOW,
        deadline_at=NOW + timedelta(seconds=120),
        **fields,  # type: ignore[arg-type]
    )


def cause() -> Envelope:
    return Envelope.new(WorkflowTimer(purpose="deadline"), workflow_id=uuid.uuid4())


class TestTransitions:
    @pytest.mark.parametrize(
        ("source", "target"), [(s, t) for s in S for t in S if t in TRANSITIONS[s]], ids=lambda s: s.value
    )
    def test_legal_transition_is_applied_and_recorded(self, source: WorkflowStatus, target: WorkflowStatus) -> None:
        """A transition the machine allows changes the status and appends one event."""
        change = Change(workflow(source), cause(), NOW + timedelta(seconds=1))
        change.move(target, "test", {"k": 1})
        assert change.workflow.status is target
        assert change.workflow.updated_at == NOW + timedelta(seconds=1)
        [event] = change.events
        assert (event.from_status, event.to_status, event.detail) == (source, target, {"k": 1})

    @pytest.mark.parametrize(
        ("source", "target"), [(s, t) for s in S for t in S if t not in TRANSITIONS[s]], ids=lambda s: s.value
    )
    def test_illegal_transition_raises(self, source: WorkflowStatus, target: WorkflowStatus) -> None:
        """A transition the machine does not allow raises and leaves the change untouched."""
        change = Change(workflow(source), cause(), NOW)
        with pytest.raises(IllegalTransition) as raised:
            change.move(target, "test")
        assert (raised.value.from_status, raised.value.to_status) == (source.value, target.value)
        assert change.workflow.status is source and change.events == []

    def test_terminal_states_lead_nowhere(self) -> None:
        """completed and failed are final."""
        assert all(not TRANSITIONS[status] for status in TERMINAL)

    def test_completing_a_failed_workflow_raises(self) -> None:
        """The engine refuses to apply a result to a failed workflow rather than overwrite it."""
        failed = workflow(S.FAILED)
        result = Envelope.new(
            GenerationCompleted(
                provider=Provider.OPENAI,
                model="m",
                content="x",
                usage=Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
                latency_ms=0,
            )
        )
        engine = Engine(router_settings(), None, None)  # type: ignore[arg-type]
        with pytest.raises(IllegalTransition):
            engine.on_completed(failed, result, NOW)

    def test_new_workflow_change_starts_with_accepted_event_and_version_one(self) -> None:
        """A created change records `accepted` and stores version 1; later changes bump the version."""
        created = Change(workflow(S.ACCEPTED), cause(), NOW, created=True)
        assert [e.name for e in created.events] == ["accepted"] and created.expected_version == 0
        assert created.result().version == 1
        later = Change(workflow(S.GENERATING, version=7), cause(), NOW)
        assert later.expected_version == 7 and later.result().version == 8


class TestFanoutPacing:
    def test_a_chunk_goes_while_few_enough_are_unfinished(self) -> None:
        """The chunk from `from_seq` goes while fewer than FANOUT_CHUNK + finished (at most FANOUT_AHEAD)
        earlier deliveries are unfinished: a send, a failure or a cancellation finishes one; a slot does not
        (the send may be minutes away)."""

        def goes(from_seq: int, tally: Tally) -> bool:
            return DeliveryDecisions.fanout_wait_s(workflow(S.DELIVERING, tally=tally), from_seq, 0) is None

        nothing_finished = Tally(total=5000, scheduled=1000)
        assert goes(FANOUT_CHUNK - 1, nothing_finished) and not goes(FANOUT_CHUNK, nothing_finished)
        two_hundred = Tally(total=5000, scheduled=1000, sent=150, failed=30, cancelled=20)
        assert goes(2 * FANOUT_CHUNK + 199, two_hundred) and not goes(2 * FANOUT_CHUNK + 200, two_hundred)
        many = Tally(total=5000, scheduled=2000, sent=1000)
        assert goes(1000 + FANOUT_AHEAD - 1, many) and not goes(1000 + FANOUT_AHEAD, many)

    def test_the_wait_grows_up_to_a_cap(self) -> None:
        delivering = workflow(S.DELIVERING, tally=Tally(total=5000))
        waits = [DeliveryDecisions.fanout_wait_s(delivering, FANOUT_AHEAD, n) for n in range(40)]
        assert waits[:2] == [FANOUT_RECHECK_S, FANOUT_RECHECK_S * FANOUT_RECHECK_GROWTH]
        assert all(w is not None for w in waits) and waits == sorted(waits)  # type: ignore[type-var]
        assert waits[-1] == FANOUT_RECHECK_MAX_S

    @pytest.mark.parametrize("status", [s for s in S if s is not S.DELIVERING], ids=lambda s: s.value)
    def test_a_workflow_not_delivering_never_waits(self, status: WorkflowStatus) -> None:
        """Ended (or not yet delivering): the fan-out handler goes on to record that nothing is requested."""
        assert DeliveryDecisions.fanout_wait_s(workflow(status, tally=Tally(total=5000)), 10 * FANOUT_AHEAD, 0) is None
