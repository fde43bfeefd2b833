"""A service process freezes what its start-up built (libs.runtime.process.freeze_heap); a serve() sharing
its process with other work — a test, a caller's own objects — leaves the collector alone."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator

import pytest

from libs.runtime import Runtime, Service, serve


@pytest.fixture
def unfrozen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("HEALTH_PORT", "0")
    monkeypatch.setenv("HEALTH_HOST", "127.0.0.1")
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process goes on collecting what it builds next


async def started_and_stopped(*, owns_process: bool) -> int:
    """How many objects were frozen while a probe service ran under serve()."""
    stop, started = asyncio.Event(), asyncio.Event()

    async def probe(runtime: Runtime) -> Service:
        return Service(name="probe")

    task = asyncio.create_task(serve([probe], name="probe", stop=stop, started=started, owns_process=owns_process))
    await asyncio.wait_for(started.wait(), 10)
    frozen = gc.get_freeze_count()
    stop.set()
    await asyncio.wait_for(task, 10)
    return frozen


async def test_a_service_process_freezes_its_start_up_heap(unfrozen: None) -> None:
    assert await started_and_stopped(owns_process=True) > 10_000  # modules, models, instruments


async def test_a_shared_process_is_left_to_the_collector(unfrozen: None) -> None:
    assert await started_and_stopped(owns_process=False) == 0
