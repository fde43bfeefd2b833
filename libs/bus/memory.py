"""`memory://`: the bus inside one process — for the embedded mode and fast unit tests.

Same routing, redelivery, dead-lettering, delays and request/reply as the brokers, minus durability:
what is in its queues dies with the process. Dead-letter queues are bounded like RabbitMQ's (the oldest
dead letter goes when DEAD_LETTER_MAX_LENGTH is reached); peeking copies, replaying moves.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict, deque
from collections.abc import Mapping

from libs.bus import constants as c
from libs.bus.base import Bus, Consumer, DeadLetter, Verdict, new_instance_id
from libs.bus.dead_letters import replay_headers, selected
from libs.bus.errors import Unroutable

Item = tuple[bytes, dict[str, str]]


class MemoryBus(Bus):
    system = "memory"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._queues: dict[str, asyncio.Queue[Item]] = defaultdict(asyncio.Queue)
        self._dead: dict[str, deque[DeadLetter]] = defaultdict(lambda: deque(maxlen=c.DEAD_LETTER_MAX_LENGTH))
        self._loops: dict[int, asyncio.Task[None]] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._reply_name = f"memory.reply.{new_instance_id()}"

    async def connect(self) -> None:
        return None

    async def _send(
        self, key: str, services: tuple[str, ...], body: bytes, headers: dict[str, str], delay: float
    ) -> None:
        if not services:
            raise Unroutable(f"no service consumes {key!r}")
        for service in services:
            self._put(service, body, dict(headers), delay)

    def _put(self, service: str, body: bytes, headers: dict[str, str], delay: float) -> None:
        queue = self._queues[service]
        if delay <= 0:
            queue.put_nowait((body, headers))
            return
        loop = asyncio.get_running_loop()
        handle: asyncio.TimerHandle

        def fire() -> None:
            self._timers.discard(handle)
            queue.put_nowait((body, headers))

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    async def _reply(self, reply_to: str, body: bytes, headers: dict[str, str]) -> None:
        self._resolve_reply(body, headers)

    async def _reply_queue(self) -> str:
        return self._reply_name

    async def _start_consumer(self, consumer: Consumer) -> None:
        self._loops[id(consumer)] = asyncio.create_task(self._consume(consumer))

    async def _consume(self, consumer: Consumer) -> None:
        queue = self._queues[consumer.service]
        slots = asyncio.Semaphore(consumer.prefetch)
        while True:
            await slots.acquire()
            body, headers = await queue.get()
            task = asyncio.create_task(self._process(consumer, body, headers))
            task.add_done_callback(lambda _: slots.release())
            consumer.track(task)

    async def _process(self, consumer: Consumer, body: bytes, headers: Mapping[str, str]) -> None:
        outcome = await consumer.handle(body, headers)
        if outcome.verdict is Verdict.RETRY:
            self._put(consumer.service, body, dict(outcome.headers), outcome.delay_s)
        elif outcome.verdict is Verdict.DEAD:
            self._dead[consumer.service].append(DeadLetter(body, outcome.reason, outcome.headers))

    async def _stop_consumer(self, consumer: Consumer) -> None:
        loop = self._loops.pop(id(consumer), None)
        if loop is not None:
            loop.cancel()

    async def _disconnect(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    async def dead_letters(self, service: str) -> list[DeadLetter]:
        taken = list(self._dead[service])
        self._dead[service].clear()
        return taken

    async def peek_dead_letters(self, service: str, limit: int) -> list[DeadLetter]:
        return list(self._dead[service])[:limit]

    async def replay_dead_letters(self, service: str, message_id: str | None = None) -> int:
        replay_id = new_instance_id()
        queue = self._dead[service]
        chosen = [dead for dead in queue if selected(dead, message_id, replay_id)]
        for dead in chosen:
            queue.remove(dead)
            self._put(service, dead.body, replay_headers(dead.headers, replay_id), 0.0)
        return len(chosen)

    async def dead_letter_depth(self, service: str) -> int:
        return len(self._dead[service])

    async def ping(self) -> None:
        return None

    def depth(self, service: str) -> int:
        """Messages waiting in `service`'s queue (tests and the embedded mode's health)."""
        return self._queues[service].qsize()
