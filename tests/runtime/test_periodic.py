"""libs.runtime.periodic: housekeeping that drains full batches, survives a failed run and keeps its pace."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

from libs.runtime.periodic import in_batches_forever


async def test_drains_full_batches_then_waits_and_survives_a_failure() -> None:
    """A run repeats the job while it handles a full batch; a failing run is retried at the next interval."""
    results = iter([3, 3, 1, RuntimeError("database gone"), 0])
    calls: list[float] = []
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()

    async def job() -> int:
        calls.append(loop.time())
        result = next(results, None)
        if result is None:
            finished.set()
            return 0
        if isinstance(result, Exception):
            raise result
        return result

    task = asyncio.create_task(in_batches_forever(job, 3, 0.1, "test.failed"))
    await asyncio.wait_for(finished.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    gaps = [later - earlier for earlier, later in itertools.pairwise(calls)]
    # 3, 3, 1 in one run; the failure and the 0 each a run of their own, an interval apart.
    assert len(calls) == 6
    assert gaps[0] < 0.05 and gaps[1] < 0.05
    assert all(gap >= 0.09 for gap in gaps[2:])
