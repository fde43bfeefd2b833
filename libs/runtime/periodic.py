"""Background housekeeping a service runs beside its handlers (purges, sweeps)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger(__name__)


async def in_batches_forever(
    job: Callable[[], Awaitable[int]], batch: int, interval_s: float, failed_event: str
) -> None:
    """Every `interval_s`, run `job` (which handles up to `batch` items and says how many) until it handles
    fewer than a full batch. A failed run is logged as `failed_event`; the next one retries — housekeeping
    must never stop the service."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            while await job() == batch:
                pass
        except Exception as exc:
            log.warning(failed_event, error=f"{type(exc).__name__}: {exc}")
