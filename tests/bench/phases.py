"""The bench's phases (see tests/bench/run.py for what each number means): POSTs with a number in flight,
the fixed-concurrency loop, completion read from the router's table, and raw bus chains for comparison."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from dataclasses import dataclass
from types import TracebackType

import asyncpg

from contracts import Envelope
from contracts import messages as m
from libs.bus import create_bus
from tests.bench.workload import Workload
from tests.integration.stack import destroy_namespace

# The fixed-concurrency phase learns a completion within this, so a slot's next POST follows promptly.
WATCH_POLL_S = 0.015
# The burst waits for n workflows at once: a coarse poll keeps its large queries off the router's database.
BURST_POLL_S = 0.2
TERMINAL_TIMEOUT_S = 300.0
# Raw chains: give up on those left when none finished for this long. A chain whose message the broker lost
# would otherwise hold the bench forever (once on moto: a campaign run sat 13 minutes in this phase).
RAW_STALL_S = 60.0

_TERMINAL = (
    "SELECT workflow_id, status, extract(epoch FROM created_at) AS c, extract(epoch FROM completed_at) AS d"
    " FROM router.hybrid_workflows WHERE workflow_id = ANY($1::uuid[]) AND status IN ('completed', 'failed')"
)


@dataclass(frozen=True)
class Finished:
    """A terminal workflow as the router recorded it (epoch seconds, the router's clock)."""

    status: str
    created: float
    completed: float

    @property
    def latency_ms(self) -> float:
        return (self.completed - self.created) * 1000


class CompletionWatcher:
    """One poller of the router's table for every workflow the bench waits on — one query per interval for
    all of them, not one per workflow — resolving each workflow's future once it is terminal."""

    def __init__(self, dsn: str, interval_s: float) -> None:
        self.dsn = dsn
        self.interval_s = interval_s
        self._pending: dict[uuid.UUID, asyncio.Future[Finished]] = {}
        self._conn: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._error: Exception | None = None  # why the poller stopped

    async def __aenter__(self) -> CompletionWatcher:
        self._conn = await asyncpg.connect(self.dsn)
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._conn is not None:
            await self._conn.close()

    def finished(self, workflow_id: str) -> asyncio.Future[Finished]:
        future: asyncio.Future[Finished] = asyncio.get_running_loop().create_future()
        if self._error is not None:
            future.set_exception(self._error)
        else:
            self._pending[uuid.UUID(workflow_id)] = future
        return future

    async def all_finished(self, ids: list[str], timeout: float = TERMINAL_TIMEOUT_S) -> list[Finished]:
        futures = [self.finished(i) for i in ids]
        done, _ = await asyncio.wait(futures, timeout=timeout)
        if len(done) < len(futures):
            raise RuntimeError(f"{len(futures) - len(done)} workflows not terminal after {timeout}s")
        return [f.result() for f in futures]

    async def _poll(self) -> None:
        assert self._conn is not None
        try:
            while True:
                if self._pending:
                    for row in await self._conn.fetch(_TERMINAL, list(self._pending)):
                        future = self._pending.pop(row["workflow_id"])
                        if not future.done():
                            future.set_result(Finished(row["status"], float(row["c"]), float(row["d"])))
                await asyncio.sleep(self.interval_s)
        except Exception as exc:  # every waiter learns why instead of waiting for its timeout
            self._error = exc
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(exc)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of `values`, rounded to 0.1; nan when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


async def submit_all(workload: Workload, n: int, concurrency: int, *, wait: bool) -> tuple[list[str], list[float]]:
    """POST n workflows with `concurrency` in flight; returns their ids and client-side latencies (ms)."""
    ids: list[str] = []
    latencies: list[float] = []
    todo = iter(range(n))  # shared: each worker takes the next number until none is left

    async def worker() -> None:
        for _ in todo:
            workflow_id, latency_ms = await workload.submit(wait=wait)
            ids.append(workflow_id)
            latencies.append(latency_ms)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids, latencies


async def wait_terminal(dsn: str, ids: list[str]) -> list[Finished]:
    """Until every workflow of `ids` is terminal (coarse polling: for many ids at once)."""
    async with CompletionWatcher(dsn, BURST_POLL_S) as watcher:
        return await watcher.all_finished(ids)


async def at_fixed_concurrency(workload: Workload, dsn: str, n: int, concurrency: int) -> list[Finished]:
    """n workflows through `concurrency` slots: each slot POSTs one (no wait), waits until the router's table
    says it is terminal, then POSTs the next — so exactly `concurrency` are in the system at any time."""
    finished: list[Finished] = []
    todo = iter(range(n))
    async with CompletionWatcher(dsn, WATCH_POLL_S) as watcher:

        async def slot() -> None:
            for _ in todo:
                workflow_id, _ = await workload.submit(wait=False)
                finished.append(await asyncio.wait_for(watcher.finished(workflow_id), TERMINAL_TIMEOUT_S))

        await asyncio.gather(*(slot() for _ in range(concurrency)))
    return finished


async def raw_chains(bus_url: str, n: int, concurrency: int, hops: int) -> float:
    """Chains of `hops` bus hops with empty handlers (consume, publish the next, ack), chains per second."""
    bus = create_bus(bus_url, namespace=f"raw{uuid.uuid4().hex[:8]}")
    await bus.connect()
    done: dict[uuid.UUID, asyncio.Future[None]] = {}

    async def hop(envelope: Envelope) -> None:
        if envelope.attempt >= hops:
            future = done.get(envelope.workflow_id)  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(None)
            return
        await bus.publish(envelope.child(envelope.payload, attempt=envelope.attempt + 1))

    await bus.subscribe("router", {"workflow.requested": hop}, prefetch=concurrency)
    sem = asyncio.Semaphore(concurrency)
    loop = asyncio.get_running_loop()

    async def chain() -> None:
        async with sem:
            wid = uuid.uuid4()
            done[wid] = loop.create_future()
            intent = m.Intent(type="message_generation")
            await bus.publish(Envelope.new(m.WorkflowRequested(intent=intent), workflow_id=wid, user_id="raw"))
            await done[wid]

    # Counted by a callback per chain: an asyncio.wait over the pending set at every completion costs O(n²)
    # (6 % of this process's CPU at n = 1,500, py-spy) and slowed the very chain it measures.
    progress = asyncio.Event()
    ended = 0

    def count(_: asyncio.Task[None]) -> None:
        nonlocal ended
        ended += 1
        progress.set()

    started = time.perf_counter()
    tasks = [asyncio.create_task(chain()) for _ in range(n)]
    for task in tasks:
        task.add_done_callback(count)
    while ended < n:
        progress.clear()
        try:
            await asyncio.wait_for(progress.wait(), RAW_STALL_S)
        except TimeoutError:
            break
    elapsed = time.perf_counter() - started
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        print(f"warning: {len(pending)} of {n} raw chains stalled for {RAW_STALL_S:g}s, not counted", file=sys.stderr)
    await bus.close(grace_s=1)
    await destroy_namespace(bus_url, bus.namespace)
    return (n - len(pending)) / elapsed
