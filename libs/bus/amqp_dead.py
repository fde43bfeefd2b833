"""Dead-letter queues on RabbitMQ: drain, peek and replay over one DLQ, and AMQP messages as bus headers.

RabbitMQ has no "read without taking" for queues: a peek is `basic.get` without acknowledging, then
closing the channel, which hands every message taken back in its place (a bounded get loop, because a
consumer would have the broker push more than asked); the broker does so after answering the close, so the
bus waits until they are ready again before it answers. The broker counts each such return as a delivery —
harmless on a DLQ up to RabbitMQ 3.13, which sets no delivery limit; 4.x sets one (README: dead letters).
A replay is one pass over the messages the DLQ held when it began: the chosen ones are published (confirmed)
to their service's queue and then acknowledged; the others go back when the channel closes. Messages
dead-lettered meanwhile sit behind that pass and are not reached.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from aio_pika.abc import AbstractIncomingMessage, AbstractQueue

from libs.bus import constants as c
from libs.bus.base import DeadLetter
from libs.bus.dead_letters import replay_headers, selected

Send = Callable[[bytes, dict[str, str]], Awaitable[None]]
"""Publishes a replayed copy to the service's queue, returning once the broker confirmed it."""


def text_headers(raw: Mapping[str, Any] | None) -> dict[str, str]:
    """An AMQP message's headers as the bus's text headers (tables and lists, like x-death, are left out)."""
    out: dict[str, str] = {}
    for key, value in (raw or {}).items():
        if isinstance(value, bytes):
            out[key] = value.decode("utf-8", "replace")
        elif isinstance(value, str | int | float):
            out[key] = str(value)
    return out


def dead_letter_of(message: AbstractIncomingMessage) -> DeadLetter:
    """A message of a DLQ as a DeadLetter. One the broker dead-lettered itself (delivery limit) has no
    headers of ours: its reason and time come from the broker's x-death header."""
    headers = text_headers(message.headers)
    reason = headers.get(c.H_DEAD_REASON) or _x_death_reason(message.headers)
    headers.setdefault(c.H_DEAD_REASON, reason)
    if c.H_DEAD_AT not in headers and (when := _x_death_time(message.headers)) is not None:
        headers[c.H_DEAD_AT] = str(int(when.timestamp() * 1000))
    return DeadLetter(message.body, reason, headers)


async def drain(queue: AbstractQueue) -> list[DeadLetter]:
    taken: list[DeadLetter] = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        taken.append(dead_letter_of(message))
        await message.ack()
    return taken


async def peek(queue: AbstractQueue, depth: int, limit: int) -> list[DeadLetter]:
    """Up to `limit` of the `depth` ready messages, taken without acknowledging (the caller's channel must
    close afterwards, which returns them)."""
    seen: list[DeadLetter] = []
    for _ in range(min(limit, depth)):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        seen.append(dead_letter_of(message))
    return seen


async def replay(queue: AbstractQueue, depth: int, message_id: str | None, replay_id: str, send: Send) -> int:
    """One pass over the `depth` ready messages; how many were replayed (the caller's channel returns the
    others when it closes)."""
    replayed = 0
    for _ in range(depth):
        message = await queue.get(no_ack=False, fail=False)
        if message is None:
            break
        dead = dead_letter_of(message)
        if not selected(dead, message_id, replay_id):
            continue  # not acknowledged: back in its place when the channel closes
        await send(dead.body, replay_headers(dead.headers, replay_id))
        await message.ack()
        replayed += 1
    return replayed


def _x_death_time(raw: Mapping[str, Any] | None) -> datetime | None:
    deaths = (raw or {}).get("x-death") or []
    when = deaths[0].get("time") if deaths and isinstance(deaths[0], Mapping) else None
    return when if isinstance(when, datetime) else None


def _x_death_reason(raw: Mapping[str, Any] | None) -> str:
    """The broker's own dead-lettering reason (e.g. `delivery_limit`), from the x-death header."""
    deaths = (raw or {}).get("x-death") or []
    if deaths and isinstance(deaths[0], Mapping):
        return f"broker: {deaths[0].get('reason', 'unknown')}"
    return "broker: unknown"
