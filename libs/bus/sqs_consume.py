"""One service's subscription on SQS: long polling, bounded concurrency, visibility heartbeat, settling.

- Polling receives at most as many messages as there are free handler slots (`prefetch`, ≤ 10 per call),
  so no received message waits for a slot while its visibility timeout runs.
- While handlers run, one heartbeat per subscription extends every in-flight message in batches
  (ChangeMessageVisibilityBatch), so a 45-second LLM call is not handed to another consumer mid-flight.
- A message is deleted only after `Consumer.handle` decided its outcome and the retry copy or dead letter
  that outcome needs was accepted by SQS (SendMessage returning is SQS's confirm).
- RETRY sends a copy with `x-ho-deliveries` incremented and the backoff as DelaySeconds, then deletes the
  original. (ChangeMessageVisibility to the backoff would save a call, but then the retry count would be
  SQS's *approximate* receive count, and the redrive policy's `maxReceiveCount` would count handler
  failures too — a copy keeps the bounded retry exact and leaves maxReceiveCount to crashed consumers.)
- Delays: DelaySeconds has whole seconds up to 900. A message arriving LOCAL_WAIT_S or more before its
  `x-ho-deliver-at` is sent again with the remaining delay; a shorter remainder is slept off here, so a
  message is never handled early, and late only by SQS's own lag.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any, Protocol

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from libs.bus import constants as c
from libs.bus.base import Consumer, Verdict, int_header
from libs.bus.errors import BusError
from libs.bus.sqs_config import (
    LOCAL_WAIT_S,
    MAX_BATCH_ENTRIES,
    POLL_BACKOFF_CAP_S,
    POLL_BACKOFF_S,
    SqsSettings,
)
from libs.bus.sqs_wire import Incoming

log = structlog.get_logger("libs.bus.sqs")


class Transport(Protocol):
    """What a subscription needs from the bus (implemented by SqsBus)."""

    settings: SqsSettings

    async def send_to(self, url: str, body: bytes, headers: Mapping[str, str], delay: float) -> None: ...

    async def delete(self, url: str, receipt_handle: str) -> None: ...

    async def receive(self, url: str, max_messages: int, wait: int) -> list[Incoming]: ...

    async def set_visibility(self, url: str, receipt_handles: list[str], seconds: int) -> list[str]:
        """Change the visibility of messages; the receipt handles SQS refused."""
        ...


class Subscription:
    def __init__(self, transport: Transport, consumer: Consumer, url: str, dlq_url: str) -> None:
        self.transport = transport
        self.consumer = consumer
        self.url = url
        self.dlq_url = dlq_url
        self._slots = asyncio.Semaphore(consumer.prefetch)
        self._in_flight: dict[str, asyncio.Task[None]] = {}  # receipt handle → its processing task
        self._poller: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._poller = asyncio.create_task(self._poll())
        self._heartbeat = asyncio.create_task(self._beat())

    async def stop_polling(self) -> None:
        """Take no new messages; in-flight ones go on (and stay extended) until `close`.

        A long poll cancelled at the very moment SQS hands it a message leaves that message invisible for
        one visibility timeout, after which it is delivered again: slower, never lost.
        """
        await cancel_task(self._poller)

    async def close(self) -> None:
        """Stop the heartbeat; hand messages whose handlers outlived the grace period straight back."""
        await cancel_task(self._heartbeat)
        leftovers = dict(self._in_flight)
        for task in leftovers.values():
            task.cancel()
        await asyncio.gather(*leftovers.values(), return_exceptions=True)
        if leftovers:
            log.warning("bus.sqs.abandoned", service=self.consumer.service, messages=len(leftovers))
            with contextlib.suppress(BusError):
                await self.transport.set_visibility(self.url, list(leftovers), 0)

    # --- receiving ---------------------------------------------------------------------------------------

    async def _poll(self) -> None:
        backoff = POLL_BACKOFF_S
        most = min(MAX_BATCH_ENTRIES, self.consumer.prefetch)
        while True:
            await self._slots.acquire()
            taken = 1
            while taken < most and not self._slots.locked():
                await self._slots.acquire()  # free: does not wait
                taken += 1
            try:
                messages = await self.transport.receive(self.url, taken, self.transport.settings.wait_time)
            except BaseException as exc:
                for _ in range(taken):
                    self._slots.release()
                if not isinstance(exc, Exception):
                    raise  # cancelled: stop_polling
                # SQS unreachable, throttling, credentials expired...: the loop must outlive all of them.
                log.warning("bus.sqs.receive_failed", service=self.consumer.service, error=repr(exc), retry_in=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, POLL_BACKOFF_CAP_S)
                continue
            backoff = POLL_BACKOFF_S
            for _ in range(taken - len(messages)):
                self._slots.release()
            for message in messages:
                self._spawn(message)

    def _spawn(self, message: Incoming) -> None:
        handle = message.receipt_handle
        task = asyncio.create_task(self._process(message))
        self._in_flight[handle] = task

        def done(_: asyncio.Task[None]) -> None:
            self._in_flight.pop(handle, None)
            self._slots.release()

        task.add_done_callback(done)
        self.consumer.track(task)

    async def _beat(self) -> None:
        settings = self.transport.settings
        while True:
            await asyncio.sleep(settings.heartbeat_s)
            handles = list(self._in_flight)
            if not handles:
                continue
            try:
                refused = await self.transport.set_visibility(self.url, handles, settings.visibility_timeout)
            except Exception as exc:  # keep beating: the next tick may get through before the timeout runs out
                log.warning("bus.sqs.heartbeat_failed", service=self.consumer.service, error=repr(exc))
                continue
            lost = [h for h in refused if h in self._in_flight]
            if lost:
                # Another consumer may get these messages now; handlers are idempotent.
                log.warning("bus.sqs.heartbeat_refused", service=self.consumer.service, messages=len(lost))

    # --- handling and settling ---------------------------------------------------------------------------

    async def _process(self, message: Incoming) -> None:
        service = self.consumer.service
        try:
            if await self._early(message):
                return
            outcome = await self.consumer.handle(message.body, message.headers, message.receive_count - 1)
            if outcome.verdict is Verdict.RETRY:
                await self.transport.send_to(self.url, message.body, outcome.headers, outcome.delay_s)
            elif outcome.verdict is Verdict.DEAD:
                await self.transport.send_to(self.dlq_url, message.body, outcome.headers, 0.0)
            await self.transport.delete(self.url, message.receipt_handle)
        except BusError as exc:
            # Not deleted: SQS hands the message out again after the visibility timeout.
            log.warning("bus.sqs.settle_failed", service=service, error=str(exc))
        except (BotoCoreError, ClientError, ValueError) as exc:
            log.error("bus.sqs.process_failed", service=service, error=repr(exc))

    async def _early(self, message: Incoming) -> bool:
        """Handle a message that is not due yet: send it on (True), or sleep until it is due (False)."""
        due_ms = int_header(message.headers, c.H_DELIVER_AT)
        # +1 ms: the header holds whole milliseconds, rounded down from the time the publisher asked for.
        remaining = (due_ms + 1) / 1000 - time.time()
        if remaining >= LOCAL_WAIT_S:
            await self.transport.send_to(self.url, message.body, message.headers, remaining)
            await self.transport.delete(self.url, message.receipt_handle)
            return True
        if remaining > 0:
            await asyncio.sleep(remaining)  # DelaySeconds rounds down: never early
        return False


async def cancel_task(task: asyncio.Task[Any] | None) -> None:
    if task is None or task.done():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled ourselves, not just the task we stopped
