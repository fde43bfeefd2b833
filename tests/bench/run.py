"""`make bench`: the distributed stack on this machine, driven through the gateway, with the numbers printed.

Every service is its own process on RabbitMQ (or SQS on moto's server), PostgreSQL and Redis; the LLM
simulator runs in its own process with zero latency. Two phases at a fixed concurrency: fire-and-forget
(POST, then completion read from the router's table: accepted → completed latency) and `?wait=true`
(client-side latency). Then the same number of bus hops per workflow with empty handlers, on the same broker
in the same run (`raw_chain_per_s`), for the ratio. The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from contracts import Envelope
from contracts import messages as m
from libs.bus import create_bus
from tests.integration.client import GatewayClient
from tests.integration.stack import ROOT, Stack, free_port

SERVICES = ("router", "azure_worker", "openai_worker", "cost_tracker")
# Messages published per generation-only workflow: workflow.requested, its reply, generation.requested,
# generation.completed, usage.recorded, workflow.completed, and the router's deadline timer.
HOPS = 7


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def proc_usage(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a live process, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


async def start_llm_simulator(workdir: Path) -> tuple[asyncio.subprocess.Process, str]:
    port = free_port()
    env = {**os.environ, "LLM_SIMULATOR_PORT": str(port), "LOG_LEVEL": "warning"}
    log = (workdir / "llm-simulator.log").open("ab")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "libs.simulators.llm", cwd=ROOT, env=env, stdout=log, stderr=log
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{url}/_sim/requests") as response:
                    if response.status == 200:
                        return proc, url
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("LLM simulator did not start")


async def submit_all(client: GatewayClient, n: int, concurrency: int, *, wait: bool) -> tuple[list[str], list[float]]:
    """POST n workflows with `concurrency` in flight; returns their ids and client-side latencies (ms)."""
    ids: list[str] = []
    latencies: list[float] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)

    async def worker() -> None:
        while not queue.empty():
            i = queue.get_nowait()
            body = {"type": "message_generation", "data": {"fanName": f"fan{i}", "topic": "bench"}}
            started = time.perf_counter()
            code, answer = await client.submit(body, wait=wait)
            latencies.append((time.perf_counter() - started) * 1000)
            if code not in (200, 202):
                raise RuntimeError(f"POST answered {code}: {answer}")
            ids.append(answer["data"]["workflowId"])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ids, latencies


async def wait_completed(dsn: str, ids: list[str], timeout: float = 300) -> list[tuple[float, float]]:
    """Poll the router's table until every workflow is terminal; (created, completed) epoch seconds each."""
    uids = [uuid.UUID(i) for i in ids]
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while True:
            rows = await conn.fetch(
                "SELECT status, extract(epoch FROM created_at) AS c, extract(epoch FROM completed_at) AS d"
                " FROM router.hybrid_workflows WHERE workflow_id = ANY($1::uuid[])",
                uids,
            )
            done = [r for r in rows if r["status"] in ("completed", "failed")]
            if len(done) == len(ids):
                failed = sum(r["status"] == "failed" for r in done)
                if failed:
                    print(f"warning: {failed} workflows failed", file=sys.stderr)
                return [(float(r["c"]), float(r["d"])) for r in done]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(ids) - len(done)} workflows not terminal after {timeout}s")
            await asyncio.sleep(0.2)
    finally:
        await conn.close()


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

    started = time.perf_counter()
    await asyncio.gather(*(chain() for _ in range(n)))
    elapsed = time.perf_counter() - started
    await bus.close(grace_s=1)
    destroy = getattr(bus, "destroy", None)
    if destroy is not None:
        cleaner = create_bus(bus_url, namespace=bus.namespace)
        await cleaner.connect()
        await cleaner.destroy()  # type: ignore[attr-defined]
        await cleaner.close(grace_s=1)
    return n / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="workflows per phase")
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    args = parser.parse_args()
    amqp = os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
    dsn = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    workdir = Path(tempfile.mkdtemp(prefix="ho-bench-"))
    llm, llm_url = await start_llm_simulator(workdir)
    secret = secrets.token_urlsafe(32)
    env = {
        "AZURE_OPENAI_ENDPOINT": llm_url,
        "AZURE_OPENAI_API_KEY": "bench",
        "OPENAI_BASE_URL": f"{llm_url}/v1",
        "OPENAI_API_KEY": "bench",
        "GATEWAY_JWT_SECRET": secret,
        "GATEWAY_PORT": str(free_port()),
        "LOG_LEVEL": "warning",
        "BUS_PREFETCH": "64",
    }
    available = [s for s in SERVICES if (ROOT / "services" / s / "__main__.py").exists()]
    try:
        async with Stack(amqp, dsn, redis_url, workdir, env=env) as stack:
            await asyncio.gather(*(stack.start(s) for s in available))
            await stack.start("gateway")
            client = GatewayClient(
                f"http://127.0.0.1:{env['GATEWAY_PORT']}", secret, user=f"bench-{uuid.uuid4().hex[:6]}"
            )
            await submit_all(client, 100, args.concurrency, wait=True)  # warm-up
            before = {name: proc_usage(p.pid) for name, p in stack.procs.items()}

            t0 = time.perf_counter()
            ids, _ = await submit_all(client, args.n, args.concurrency, wait=False)
            times = await wait_completed(stack.database_url, ids)
            wall = time.perf_counter() - t0
            span = max(d for _, d in times) - min(c for c, _ in times)
            lat = [(d - c) * 1000 for c, d in times]
            after = {name: proc_usage(p.pid) for name, p in stack.procs.items()}

            wait_ids, wait_lat = await submit_all(client, args.n // 2, args.concurrency, wait=True)
            await client.close()
        raw = await raw_chains(amqp, args.n, args.concurrency, HOPS)
    finally:
        llm.terminate()
        await llm.wait()

    workflows_per_s = len(times) / span
    result: dict[str, Any] = {
        "transport": "amqp",
        "mode": "generation",
        "n": args.n,
        "concurrency": args.concurrency,
        "workflows_per_s": round(workflows_per_s, 1),
        "wall_s": round(wall, 2),
        "p50_ms": round(pct(lat, 0.50), 1),
        "p95_ms": round(pct(lat, 0.95), 1),
        "p99_ms": round(pct(lat, 0.99), 1),
        "wait_p50_ms": round(pct(wait_lat, 0.50), 1),
        "wait_p99_ms": round(pct(wait_lat, 0.99), 1),
        "hops": HOPS,
        "raw_chain_per_s": round(raw, 1),
        "ratio": round(workflows_per_s / raw, 3),
        "cpu_s": {k: round(after[k][0] - before[k][0], 2) for k in after},
        "peak_rss_mib": {k: round(after[k][1], 1) for k in after},
    }
    print(f"\n{'metric':<22} value")
    for key, value in result.items():
        if not isinstance(value, dict):
            print(f"{key:<22} {value}")
    print(f"{'service':<22} {'cpu_s':>8} {'peak_rss_mib':>13} {'cpu_ms/workflow':>16}")
    for name in result["cpu_s"]:
        cpu = result["cpu_s"][name]
        print(f"{name:<22} {cpu:>8} {result['peak_rss_mib'][name]:>13} {cpu * 1000 / args.n:>16.2f}")
    print(f"(wait=true phase: {len(wait_ids)} workflows; logs in {workdir})")
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
