"""`make bench --mode priority`: critical workflows from one user while another user's low-priority backlog runs.

After the warm-up (WARMUP generation workflows at the default priority, ?wait=true), one user POSTs n
low-priority generation workflows (-n, default 5000 on amqp) with BACKLOG_IN_FLIGHT requests in flight, and
keeps POSTing while another user, once BACKLOG_AHEAD of them are accepted, sends CRITICALS critical ones one
at a time: POST, wait until the router's table says it is terminal, pause CRITICAL_GAP_S, the next. The
services run with the default BUS_PREFETCH (32), as deployed.

   critical_p50_ms / p99_ms / max_ms  accepted -> completed of the critical workflows (created_at ->
                                      completed_at, both stamped by the router)
   low_per_s_during                   low workflows completed per second while the critical ones ran
   low_per_s_after                    the same from the last critical's end until the backlog is done
   low_share                          low_per_s_during / low_per_s_after: the capacity the low lane kept
   low_left_at_end                    low workflows not yet completed when the last critical finished
                                      (0 would mean the criticals never ran against a backlog)
   targets                            critical_p99_ms < 500 and low_share >= 0.5: met or missed, reported only
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from tests.bench.phases import WATCH_POLL_S, CompletionWatcher, pct, submit_all, wait_terminal
from tests.bench.workload import WARMUP, Workload
from tests.integration.client import GatewayClient

BACKLOG_IN_FLIGHT = 64  # the low user's POSTs in flight: the backlog grows faster than it drains
BACKLOG_AHEAD = 500  # low workflows accepted before the first critical one (at most n / 2)
CRITICALS = 50
CRITICAL_GAP_S = 0.1
CRITICAL_P99_TARGET_MS = 500.0
LOW_SHARE_TARGET = 0.5

_COMPLETED = (
    "SELECT extract(epoch FROM completed_at) AS d FROM router.hybrid_workflows"
    " WHERE workflow_id = ANY($1::uuid[]) AND completed_at IS NOT NULL"
)


async def measure_priority(
    workload: Workload, dsn: str, n: int, concurrency: int, critical_client: GatewayClient
) -> dict[str, Any]:
    """The phases above on a running stack (generation services), by `workload`'s first user and
    `critical_client`."""
    await submit_all(workload, WARMUP, concurrency, wait=True)
    low_client = workload.clients[0]
    low_ids: list[str] = []
    ahead = asyncio.Event()

    async def backlog() -> None:
        todo = iter(range(n))

        async def poster() -> None:
            for _ in todo:
                workflow_id, _ = await workload.submit(wait=False, priority="low", client=low_client)
                low_ids.append(workflow_id)
                if len(low_ids) >= min(BACKLOG_AHEAD, n // 2):
                    ahead.set()

        await asyncio.gather(*(poster() for _ in range(BACKLOG_IN_FLIGHT)))
        ahead.set()

    posting = asyncio.create_task(backlog())
    await ahead.wait()
    started = time.time()
    criticals = []
    async with CompletionWatcher(dsn, WATCH_POLL_S) as watcher:
        for _ in range(CRITICALS):
            workflow_id, _ = await workload.submit(wait=False, priority="critical", client=critical_client)
            criticals.append(await watcher.finished(workflow_id))
            await asyncio.sleep(CRITICAL_GAP_S)
    ended = time.time()
    await posting
    await wait_terminal(dsn, low_ids)
    connection = await asyncpg.connect(dsn)
    try:
        done = sorted(float(row["d"]) for row in await connection.fetch(_COMPLETED, low_ids))
    finally:
        await connection.close()
    during = sum(1 for t in done if started <= t <= ended)
    after = sum(1 for t in done if t > ended)
    low_during = during / (ended - started)
    low_after = after / (done[-1] - ended) if after and done[-1] > ended else float("nan")
    latencies = [f.latency_ms for f in criticals]
    result: dict[str, Any] = {
        "critical_p50_ms": pct(latencies, 0.50),
        "critical_p99_ms": pct(latencies, 0.99),
        "critical_max_ms": round(max(latencies), 1),
        "criticals": len(criticals),
        "criticals_failed": sum(f.status != "completed" for f in criticals),
        "low_per_s_during": round(low_during, 1),
        "low_per_s_after": round(low_after, 1),
        "low_share": round(low_during / low_after, 2) if low_after == low_after else float("nan"),
        "low_left_at_end": len(low_ids) - sum(1 for t in done if t <= ended),
        "low_completed": len(done),
    }
    result["targets"] = {
        f"critical_p99_ms < {CRITICAL_P99_TARGET_MS:g}": "met"
        if result["critical_p99_ms"] < CRITICAL_P99_TARGET_MS
        else "missed",
        f"low_share >= {LOW_SHARE_TARGET:g}": "met" if result["low_share"] >= LOW_SHARE_TARGET else "missed",
    }
    return result
