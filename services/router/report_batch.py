"""Delivery reports committed together (group commit): the campaign's hot path.

Every report of a campaign locks the same workflow row (its counters) until its transaction commits, so
one report at a time per workflow is all PostgreSQL can do, however many handlers wait: a campaign's pace
was one commit (with its WAL flush) per report. Here the reports that arrive while a batch is being
written wait and go together in the next batch — one statement, one commit — so a busy router writes many
per commit and an idle one writes each at once (no timer, no added latency).

A batch that fails is retried report by report, so a report the database refuses fails alone (its message
is retried or dead-lettered by the bus) and the others are written.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from services.router.delivery import Report
from services.router.store import Counted


@dataclass(slots=True)
class Pending:
    """One report waiting for its batch, and the future its handler awaits."""

    workflow_id: uuid.UUID
    message_id: uuid.UUID
    report: Report
    at: datetime
    done: asyncio.Future[Counted | None] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


WriteBatch = Callable[[Sequence[Pending]], Awaitable[list[Counted | None]]]
"""Write the reports in one transaction; each one's result, in order (None: unknown workflow)."""


class ReportBatcher:
    def __init__(self, write_batch: WriteBatch, write_one: WriteBatch, max_batch: int) -> None:
        self._write_batch = write_batch
        self._write_one = write_one
        self._max = max_batch
        self._queue: list[Pending] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, pending: Pending) -> Counted | None:
        """Write `pending` with whatever else is waiting; its result once committed."""
        self._queue.append(pending)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name="router.reports")
        return await pending.done

    async def _write_all(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[: self._max], self._queue[self._max :]
                # One order for every batch on every replica: workflow rows are locked in it (no deadlock).
                batch.sort(key=lambda p: p.workflow_id.bytes)
                await self._write(batch)
        finally:
            self._writer = None

    async def _write(self, batch: list[Pending]) -> None:
        try:
            results = await (self._write_batch(batch) if len(batch) > 1 else self._write_one(batch))
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0], error=exc)
                return
            for pending in batch:  # find the one the database refuses; the rest are written
                await self._write([pending])
            return
        for pending, result in zip(batch, results, strict=True):
            _settle(pending, result=result)


def _settle(pending: Pending, *, result: Counted | None = None, error: BaseException | None = None) -> None:
    if pending.done.done():  # its handler was cancelled (shutdown): the bus redelivers the message
        return
    if error is not None:
        pending.done.set_exception(error)
    else:
        pending.done.set_result(result)
