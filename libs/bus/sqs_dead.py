"""Dead-letter queues on SQS: drain, peek, replay and depth, on top of SqsBus's receive / send / delete.

SQS has no "read without taking": a peek receives messages hidden for DLQ_PEEK_VISIBILITY_S (so one pass
never sees a message twice), then makes them visible again at once (ChangeMessageVisibility 0). A process
dying in between only delays them by that long. Receiving raises ApproximateReceiveCount, which means
nothing on a DLQ (it has no redrive policy of its own). A pass ends on an empty long poll (DRAIN_WAIT_S:
a long poll asks every SQS server, a short one may answer "empty" while messages exist).

Retention bounds a DLQ: 14 days (libs.bus.sqs_config.DLQ_RETENTION_S), the most SQS keeps anything.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from libs.bus import constants as c
from libs.bus.base import DeadLetter
from libs.bus.dead_letters import replay_headers, selected
from libs.bus.errors import BusConnectionError
from libs.bus.sqs_config import (
    AWS_TRACE_ATTRIBUTE,
    DLQ_PEEK_VISIBILITY_S,
    DLQ_SOURCE_ATTRIBUTE,
    DRAIN_WAIT_S,
    MAX_BATCH_ENTRIES,
    RECEIVE_COUNT_ATTRIBUTE,
    SENT_TIMESTAMP_ATTRIBUTE,
)
from libs.bus.sqs_wire import Incoming, translate

DLQ_ATTRIBUTES = (RECEIVE_COUNT_ATTRIBUTE, AWS_TRACE_ATTRIBUTE, DLQ_SOURCE_ATTRIBUTE, SENT_TIMESTAMP_ATTRIBUTE)


class Transport(Protocol):
    """What these need of SqsBus."""

    async def receive(
        self, url: str, max_messages: int, wait: int, system_attributes: tuple[str, ...], visibility: int | None
    ) -> list[Incoming]: ...

    async def send_to(self, url: str, body: bytes, headers: dict[str, str], delay: float) -> None: ...

    async def delete(self, url: str, receipt_handle: str) -> None: ...

    async def set_visibility(self, url: str, receipt_handles: list[str], seconds: int) -> list[str]: ...


def dead_letter_of(message: Incoming) -> DeadLetter:
    """A DLQ message as a DeadLetter. One SQS moved here itself (redrive) has no headers of ours: its reason
    is the redrive, its time the SentTimestamp (the first send: SQS keeps it through a redrive)."""
    headers = dict(message.headers)
    reason = headers.get(c.H_DEAD_REASON) or _redrive_reason(message)
    headers.setdefault(c.H_DEAD_REASON, reason)
    if c.H_DEAD_AT not in headers and message.sent_at_ms is not None:
        headers[c.H_DEAD_AT] = str(message.sent_at_ms)
    return DeadLetter(message.body, reason, headers)


async def drain(bus: Transport, url: str) -> list[DeadLetter]:
    taken: list[DeadLetter] = []
    while messages := await bus.receive(url, MAX_BATCH_ENTRIES, DRAIN_WAIT_S, DLQ_ATTRIBUTES, None):
        taken += [dead_letter_of(m) for m in messages]
        await asyncio.gather(*(bus.delete(url, m.receipt_handle) for m in messages))
    return taken


async def peek(bus: Transport, url: str, limit: int) -> list[DeadLetter]:
    held: list[Incoming] = []
    try:
        while len(held) < limit:
            wanted = min(MAX_BATCH_ENTRIES, limit - len(held))
            messages = await bus.receive(url, wanted, DRAIN_WAIT_S, DLQ_ATTRIBUTES, DLQ_PEEK_VISIBILITY_S)
            if not messages:
                break
            held += messages
    finally:
        await _release(bus, url, held)
    return [dead_letter_of(m) for m in held[:limit]]


async def replay(bus: Transport, url: str, target_url: str, message_id: str | None, replay_id: str) -> int:
    """One pass over the DLQ: selected messages are sent to `target_url` and, once SQS took the copy,
    deleted; the others are made visible again at the end (those include any this replay sent that failed
    again meanwhile: they carry its replay id and are never selected, so the pass ends)."""
    held: list[Incoming] = []
    replayed = 0
    try:
        while len(held) < c.DEAD_LETTER_MAX_LENGTH:
            messages = await bus.receive(url, MAX_BATCH_ENTRIES, DRAIN_WAIT_S, DLQ_ATTRIBUTES, DLQ_PEEK_VISIBILITY_S)
            if not messages:
                break
            chosen = []
            for message in messages:
                dead = dead_letter_of(message)
                if selected(dead, message_id, replay_id):
                    chosen.append((message, dead))
                else:
                    held.append(message)
            # Concurrently, so the batcher sends and deletes them ten to a call (libs.bus.sqs_batch).
            await asyncio.gather(*(_move(bus, url, target_url, m, d, replay_id) for m, d in chosen))
            replayed += len(chosen)
    finally:
        await _release(bus, url, held)
    return replayed


async def _move(bus: Transport, url: str, target_url: str, message: Incoming, dead: DeadLetter, replay_id: str) -> None:
    """The copy first: a failure in between leaves a duplicate (handlers are idempotent), never a loss."""
    await bus.send_to(target_url, dead.body, replay_headers(dead.headers, replay_id), 0.0)
    await bus.delete(url, message.receipt_handle)


async def depth(client: Any, url: str) -> int:
    """Visible plus in-flight messages (approximate, as SQS counts)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    try:
        response = await client.get_queue_attributes(QueueUrl=url, AttributeNames=names)
    except (BotoCoreError, ClientError) as exc:
        raise translate(exc, "GetQueueAttributes", BusConnectionError) from exc
    return sum(int(response["Attributes"].get(name, 0)) for name in names)


async def _release(bus: Transport, url: str, held: list[Incoming]) -> None:
    if held:
        await bus.set_visibility(url, [m.receipt_handle for m in held], 0)


def _redrive_reason(message: Incoming) -> str:
    """Why SQS itself moved a message here: its consumers kept failing to delete it (crashed or stalled)."""
    source = f" (from {message.source_arn.rsplit(':', 1)[-1]})" if message.source_arn else ""
    return f"sqs: redrive policy, maxReceiveCount exceeded{source}"
