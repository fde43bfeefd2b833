"""Group commit of single-message SQS calls (send, delete) into their *Batch forms.

Each caller submits one entry and waits for its own result. Up to MAX_BATCH_CALLS_IN_FLIGHT batch calls
per queue run at once; entries submitted while all of them are busy wait and leave together in the next
call (up to 10 entries and MAX_BATCH_BYTES). So an idle bus adds no latency (a lone entry leaves at once)
and a busy one makes a tenth of the calls — Python CPU per call, not the network, bounds a service
(README.md, Performance), and SQS bills per call.

A batch call can partly fail: entries failing through SQS's fault (`SenderFault` false) are resubmitted
up to BATCH_ENTRY_RETRIES times; the others fail their caller with a BusError.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from botocore.exceptions import BotoCoreError, ClientError

from libs.bus.errors import PublishError
from libs.bus.sqs_config import BATCH_ENTRY_RETRIES, MAX_BATCH_BYTES, MAX_BATCH_CALLS_IN_FLIGHT, MAX_BATCH_ENTRIES
from libs.bus.sqs_wire import translate

BatchCall = Callable[[str, list[dict[str, Any]]], Awaitable[Mapping[str, Any]]]
"""Makes one *Batch call: (queue url, entries with their `Id`) → the response (`Successful`, `Failed`)."""

log = structlog.get_logger("libs.bus.sqs")


@dataclass
class _Entry:
    params: dict[str, Any]
    size: int
    future: asyncio.Future[None]
    retries_left: int = BATCH_ENTRY_RETRIES


@dataclass
class _Lane:
    """The entries waiting for one queue, and how many batch calls to it are running."""

    waiting: deque[_Entry] = field(default_factory=deque)
    running: int = 0


class Batcher:
    def __init__(self, call: BatchCall, action: str, *, max_in_flight: int = MAX_BATCH_CALLS_IN_FLIGHT) -> None:
        self._call = call
        self._action = action
        self._max_in_flight = max_in_flight
        self._lanes: dict[str, _Lane] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, url: str, params: dict[str, Any], size: int = 0) -> None:
        """Send one entry to `url` in the next batch; returns when SQS accepted it (raises a BusError)."""
        entry = _Entry(params, size, asyncio.get_running_loop().create_future())
        self._lanes.setdefault(url, _Lane()).waiting.append(entry)
        self._pump(url)
        await entry.future

    async def drain(self) -> None:
        """Wait until every submitted entry has its answer."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _pump(self, url: str) -> None:
        lane = self._lanes[url]
        while lane.waiting and lane.running < self._max_in_flight:
            batch = [lane.waiting.popleft()]
            size = batch[0].size
            while lane.waiting and len(batch) < MAX_BATCH_ENTRIES and size + lane.waiting[0].size <= MAX_BATCH_BYTES:
                size += lane.waiting[0].size
                batch.append(lane.waiting.popleft())
            lane.running += 1
            task = asyncio.create_task(self._run(url, batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if not lane.waiting and lane.running == 0:
            del self._lanes[url]

    async def _run(self, url: str, batch: list[_Entry]) -> None:
        try:
            await self._call_once(url, batch)
        finally:
            self._lanes.setdefault(url, _Lane()).running -= 1
            self._pump(url)

    async def _call_once(self, url: str, batch: list[_Entry]) -> None:
        live = [entry for entry in batch if not entry.future.done()]  # a caller may have been cancelled
        if not live:
            return
        try:
            response = await self._call(url, [{**e.params, "Id": str(i)} for i, e in enumerate(live)])
        except (BotoCoreError, ClientError) as exc:
            for entry in live:
                _settle(entry, translate(exc, self._action))
            return
        failed = {str(f.get("Id")): f for f in response.get("Failed") or ()}
        for i, entry in enumerate(live):
            failure = failed.get(str(i))
            if failure is None:
                _settle(entry, None)
            elif not failure.get("SenderFault", True) and entry.retries_left > 0:
                entry.retries_left -= 1
                log.warning("bus.sqs.batch_entry_retry", action=self._action, code=failure.get("Code"))
                self._lanes.setdefault(url, _Lane()).waiting.append(entry)
            else:
                message = f"SQS {self._action} refused an entry: {failure.get('Code')}: {failure.get('Message')}"
                _settle(entry, PublishError(message))


def _settle(entry: _Entry, error: Exception | None) -> None:
    if entry.future.done():
        return
    if error is None:
        entry.future.set_result(None)
    else:
        entry.future.set_exception(error)
