"""Dead letters for operators, on every transport: listing leaves them in place, replay sends them back
once, and a replayed message that fails again is dead-lettered again with its new reason.

Part of the conformance suite: BusConformance inherits these cases, so each transport's module runs them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from contracts import Envelope, Message
from contracts import messages as m
from libs.bus import Bus
from libs.bus import constants as c
from libs.bus.dead_letters import REDACTED, DeadLetterInfo
from libs.bus.errors import Reject

MakeBus = Callable[..., Awaitable[Bus]]
ROUTER = "router"
SENDER = "of-sender"


def secret_request(n: int = 0) -> Envelope:
    """A workflow request carrying message text and a secret in its data."""
    intent = m.Intent(type="message_generation", data={"text": "hello fan", "api_key": "sk-live-123", "n": n})
    return Envelope.new(m.WorkflowRequested(intent=intent), workflow_id=uuid.uuid4(), user_id="u1")


class Rejecting:
    """A handler that rejects every message, each time with a new reason ("attempt N")."""

    def __init__(self) -> None:
        self.seen: list[Envelope] = []

    async def __call__(self, envelope: Envelope) -> Message | None:
        self.seen.append(envelope)
        raise Reject(f"attempt {len(self.seen)}")


async def listed(bus: Bus, count: int, service: str = ROUTER, timeout: float = 10.0) -> list[DeadLetterInfo]:
    """The service's dead letters once there are `count` of them (fails after `timeout`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        items = await bus.list_dead_letters(service, limit=100)
        if len(items) == count:
            return items
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"expected {count} dead letters, listed {len(items)}")
        await asyncio.sleep(0.05)


class DeadLetterConformance:
    async def test_listing_describes_dead_letters_and_leaves_them_in_place(self, make_bus: MakeBus) -> None:
        """A listing gives id, type, version, reason, time, workflow id and a redacted preview, twice the
        same: the dead letters are still there afterwards, and the depth counts them."""
        bus = await make_bus()
        await bus.subscribe(ROUTER, {"workflow.requested": Rejecting()})
        sent = secret_request()
        before = datetime.now(UTC) - timedelta(seconds=2)
        await bus.publish(sent)
        (item,) = await listed(bus, 1)
        assert (item.id, item.type, item.version) == (str(sent.id), "workflow.requested", 1)
        assert item.reason == "rejected: attempt 1"
        assert item.workflow_id == str(sent.workflow_id)
        assert item.dead_lettered_at is not None and before <= item.dead_lettered_at <= datetime.now(UTC)
        assert item.replays == 0
        assert item.preview["intent"]["data"] == REDACTED
        assert item.preview["intent"]["type"] == "message_generation"
        assert await bus.list_dead_letters(ROUTER) == [item]
        assert await bus.dead_letter_depth(ROUTER) == 1
        (taken,) = await bus.dead_letters(ROUTER)
        assert Envelope.decode(taken.body).id == sent.id

    async def test_the_listing_limit_bounds_the_answer_not_the_queue(self, make_bus: MakeBus) -> None:
        """limit=2 of three dead letters lists two; all three stay."""
        bus = await make_bus()
        await bus.subscribe(ROUTER, {"workflow.requested": Rejecting()})
        for n in range(3):
            await bus.publish(secret_request(n))
        await listed(bus, 3)
        assert len(await bus.list_dead_letters(ROUTER, limit=2)) == 2
        assert len(await bus.dead_letters(ROUTER)) == 3

    async def test_a_delivery_s_text_is_redacted_and_its_ids_kept(self, make_bus: MakeBus) -> None:
        """A dead delivery's preview hides the fan message text and keeps its delivery, account and recipient."""
        bus = await make_bus()
        await bus.subscribe(SENDER, {"delivery.approved": Rejecting()})
        delivery = m.DeliveryApproved(
            delivery_id=uuid.uuid4(),
            account_id="acc-1",
            recipient_id="fan-9",
            text="secret words",
            slot_at=datetime.now(UTC),
        )
        await bus.publish(Envelope.new(delivery, workflow_id=uuid.uuid4()))
        (item,) = await listed(bus, 1, SENDER)
        assert item.preview["text"] == REDACTED
        assert (item.preview["delivery_id"], item.preview["account_id"]) == (str(delivery.delivery_id), "acc-1")
        assert "secret words" not in repr(item)

    async def test_replay_by_id_sends_back_that_one_only(self, make_bus: MakeBus) -> None:
        """Replaying one id puts that message on the queue again (handled now), the other stays dead."""
        bus = await make_bus()
        handler = Rejecting()
        await bus.subscribe(ROUTER, {"workflow.requested": handler})
        first, second = secret_request(1), secret_request(2)
        await bus.publish(first)
        await bus.publish(second)
        await listed(bus, 2)
        assert await bus.replay_dead_letters(ROUTER, str(first.id)) == 1
        items = await listed(bus, 2)  # the replayed one failed again and is back, with its new reason
        replayed = next(i for i in items if i.id == str(first.id))
        assert replayed.replays == 1 and replayed.reason == "rejected: attempt 3"
        assert [e.id for e in handler.seen].count(second.id) == 1

    async def test_a_replayed_message_that_fails_again_gets_a_fresh_count_and_its_new_reason(
        self, make_bus: MakeBus
    ) -> None:
        """After a replay the handler gets max_deliveries fresh tries; failing them all dead-letters the
        message again, with the new error as its reason, once (no loop)."""
        bus = await make_bus()
        runs: list[Envelope] = []

        async def handler(envelope: Envelope) -> None:
            runs.append(envelope)
            if len(runs) == 1:
                raise Reject("first life")
            raise RuntimeError(f"second life {len(runs)}")

        await bus.subscribe(ROUTER, {"workflow.requested": handler})
        sent = secret_request()
        await bus.publish(sent)
        (item,) = await listed(bus, 1)
        assert item.reason == "rejected: first life"
        assert await bus.replay_dead_letters(ROUTER) == 1
        (again,) = await listed(bus, 1)
        assert len(runs) == 1 + bus.policy.max_deliveries
        assert again.id == str(sent.id) and again.replays == 1
        assert again.reason.startswith(f"failed {bus.policy.max_deliveries} times, last: RuntimeError: second life")
        (dead,) = await bus.dead_letters(ROUTER)
        assert dead.headers[c.H_REPLAYS] == "1"

    async def test_replay_all_takes_each_dead_letter_once_even_when_they_fail_at_once(self, make_bus: MakeBus) -> None:
        """Replaying all of three that are rejected again at once answers 3 and ends: each is back in the
        dead-letter queue once, marked replayed once; a second replay marks them twice."""
        bus = await make_bus()
        handler = Rejecting()
        await bus.subscribe(ROUTER, {"workflow.requested": handler})
        for n in range(3):
            await bus.publish(secret_request(n))
        await listed(bus, 3)
        assert await asyncio.wait_for(bus.replay_dead_letters(ROUTER), 30) == 3
        assert sorted(i.replays for i in await listed(bus, 3)) == [1, 1, 1]
        assert len(handler.seen) == 6
        assert await asyncio.wait_for(bus.replay_dead_letters(ROUTER), 30) == 3
        assert sorted(i.replays for i in await listed(bus, 3)) == [2, 2, 2]

    async def test_an_undecodable_dead_letter_is_listed_and_replayed_by_its_digest(self, make_bus: MakeBus) -> None:
        """Bytes that are no envelope get a sha256 id, no type, their size as preview — and can be replayed."""
        bus = await make_bus()
        await bus.subscribe(ROUTER, {"workflow.requested": Rejecting()})
        await bus.publish_raw(ROUTER, b"\x00\x01garbage")
        (item,) = await listed(bus, 1)
        assert item.id.startswith("sha256:") and item.type is None and item.version is None
        assert item.preview == {"undecodable": True, "bytes": 9}
        assert await bus.replay_dead_letters(ROUTER, item.id) == 1
        (again,) = await listed(bus, 1)
        assert again.id == item.id and again.replays == 1 and "not JSON" in again.reason

    async def test_replaying_an_unknown_id_replays_nothing(self, make_bus: MakeBus) -> None:
        """An id not in the dead-letter queue answers 0 and leaves the queue as it was."""
        bus = await make_bus()
        await bus.subscribe(ROUTER, {"workflow.requested": Rejecting()})
        await bus.publish(secret_request())
        (item,) = await listed(bus, 1)
        assert await bus.replay_dead_letters(ROUTER, str(uuid.uuid4())) == 0
        assert await bus.list_dead_letters(ROUTER) == [item]
        assert await bus.dead_letter_depth("rate-limiter") == 0
