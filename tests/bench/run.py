"""`make bench`: the distributed stack on this machine, driven through the gateway, with the numbers printed.

Every service is its own process on PostgreSQL, Redis and the bus: RabbitMQ (--transport amqp) or SQS
(--transport sqs: moto's server, started for the run). The LLM simulator (zero latency) runs in its own
process. --mode generation makes the text only; --mode delivery also delivers it to a fan (router → worker
→ rate-limiter → of-sender → platform simulator, its own process), with the rate limits lifted so the
rate-limiter runs for every delivery but never throttles (tests/bench/workload.py).

After a warm-up (POSTs with ?wait=true; in delivery mode it also outlasts the rate-limiter's one-window hold
on Redis state it has never seen), three phases with -c as the concurrency:

1. burst, for throughput: n POSTs fire-and-forget with c requests in flight, then wait until every one is
   terminal. The bench submits faster than the system completes, so a backlog builds up.
   workflows_per_s = n / (last completed_at - first created_at); cpu_s and cpu_ms/workflow per service are
   over this phase, and servers_cpu_ms: CPU ms per workflow of RabbitMQ, PostgreSQL and Redis (each when it
   runs on this machine; the bench's own completion polling included). burst_p50_ms / burst_p99_ms:
   accepted -> completed of these workflows, backlog included (it grows with n): the queueing delay of an
   overloaded system, not a latency figure.
2. fixed concurrency, for latency: c slots; each POSTs one workflow fire-and-forget, waits until it is
   terminal, then POSTs the next, so exactly c workflows are in the system at any time. Completion is read
   from the router's table by one shared poller (every 15 ms, all ids in flight in one query), so watching
   does not load the gateway. p50_ms / p95_ms / p99_ms: accepted -> completed (completed_at - created_at,
   both stamped by the router); fixed_workflows_per_s: what this phase completed per second.
3. ?wait=true, client side: n/2 POSTs that answer when the workflow has ended, c in flight.
   wait_p50_ms / wait_p95_ms / wait_p99_ms: the HTTP round trip (the gateway learning the end and the
   recorded cost included); wait_workflows_per_s: n/2 / the phase's wall time; wait_cpu_ms: CPU ms per
   workflow per service over this phase (the bench's client is not a service), wait_servers_cpu_ms the
   servers'.
4. ?wait=true one at a time: min(n/4, 250) POSTs, one in flight. wait1_p50_ms / wait1_p99_ms.

Then raw_chain_per_s: n chains of the same number of bus hops as one workflow (`hops`) with empty handlers,
on the same broker in the same run; ratio = workflows_per_s / raw_chain_per_s; raw_chain_cpu_ms: CPU ms per
chain of the bench's own process (every hop's Python side) and of the servers. In delivery mode the platform
simulator's arrival log is checked: every fan got its message, exactly once (`delivered`). The last line
printed is one JSON object.

--trace (generation and delivery): every service exports its spans into its log, and the one-at-a-time
phase's median timeline is printed before the table — each span's start after the POST and its duration,
so the hops and statements on one workflow's path can be read off (tests/bench/timeline.py). Exporting
costs CPU, so a traced run's other numbers are not comparable with an untraced one's.

--mode campaign replaces the three phases by one campaign: after the warm-up (100 delivery workflows,
?wait=true), ONE POST of a campaign_execution with sendToOnlyFans and n fans (-n, default 5000 on amqp)
from one account, one text for every fan, the limits lifted as in delivery mode. While it runs the bench
GETs its status every 100 ms (one request at a time) until it is terminal (given 120 s + 0.1 s per fan).

   deliveries_per_s            campaign fans the platform accepted (outcome sent) / (last - first such
                               arrival), on the platform simulator's clock
   status, stalled             the campaign's last status; whether the bench stopped waiting because
                               its status and counts had not moved for 60 s
   status_p50/p99/max_ms       round trip of the status GETs that answered 200 during the campaign;
                               status_polls of them, status_errors answered otherwise or not in 10 s
                               (status_error_codes: by HTTP code, 0 for no answer);
                               status_over_200ms: how many took longer; status_slowest_at_s: when the
                               slowest was sent, s after the POST
   router_cpu_ms_per_delivery  the router process's CPU time (/proc/<pid>/stat) from the POST to the
                               terminal status, / n; cpu_s per service (and the platform simulator)
                               over the same window
   write_conflicts             `workflow.write_conflict` events in the router's log during the campaign
                               (the router logs at info in this mode for them; the others at warning)
   dead_letters                messages in every dead-letter queue of the run's namespace at the end
                               (drained through the bus), warm-up included
   fans_reached, fans_twice    campaign fans with at least one / more than one sent arrival
   post_ms                     the campaign's POST round trip (202)
   first_arrival_s             POST -> the first fan's arrival (generation and fan-out)
   arrivals_span_s             first -> last arrival; accepted_to_terminal_s: completedAt - createdAt
                               as the router stamps them; wall_s: POST -> terminal status seen
   progress_from               where the final counts came from: `progress` in the status, else the
                               `deliveries` it lists, else the deliveries list endpoint (None: none)
   deliveries_listed           whether GET /api/v2/campaigns/deliveries was served and paged through
   warnings                    warning/error log events per service:event during the campaign
   targets                     deliveries_per_s >= 150 and status_p99_ms < 200 (this 2-core machine):
                               met or missed, reported only

The invariants, which make the run exit 1 when broken: every fan reached exactly once, 0 dead letters,
and a truthful final status — terminal, `completed`, its counts (progress, or the listed deliveries; and
the deliveries list endpoint where served) n deliveries of which as many sent as fans were reached.
raw_chain_per_s then counts chains of 4 hops (one delivery's messages); ratio = deliveries_per_s / it.

--mode priority: a backlog of n low-priority generation workflows (-n, default 5000 on amqp) from one user,
and single critical ones from another while it runs: critical_p50/p99_ms and the low lane's throughput then
(tests/bench/priority.py says what each number means; target critical p99 < 500 ms, low_share >= 0.5).

--mode fairness: account A's campaign of n fans (-n, default 5000 on amqp) and account B's single deliveries,
one at a time, alone and then beside it, with real per-account limits (FAIR_LIMIT/s): B's accepted ->
completed and what A's campaign added to it; then A's own critical single deliveries beside its campaign
(own_urgent_p*_ms); then A is cancelled (tests/bench/fairness.py; no raw chains).

--mode stop runs the campaign with TWO of-sender processes and flips the kill switch off mid-way and on
again: switch_to_last_send_ms and the rest are described in tests/bench/stop.py (no raw chains).
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
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.bench.campaign import measure_campaign
from tests.bench.fairness import FAIR_LIMIT, measure_fairness
from tests.bench.phases import at_fixed_concurrency, pct, raw_chains, submit_all, wait_terminal
from tests.bench.priority import measure_priority
from tests.bench.stop import measure_stop
from tests.bench.system import machine, proc_usage, servers_cpu
from tests.bench.timeline import print_timeline, timeline
from tests.bench.workload import (
    CAMPAIGN,
    DELIVERING,
    DELIVERY,
    FAIRNESS,
    GENERATION,
    HOPS,
    LIFTED_ACCOUNT_LIMIT,
    MODES,
    PRIORITY,
    SERVICES,
    STOP,
    WARMUP,
    Workload,
    check_deliveries,
    delivery_env,
    platform_simulator_env,
)
from tests.chaos.servers import SimulatorProcess
from tests.fixtures.moto import DUMMY_CREDENTIALS, MotoServer
from tests.integration.client import GatewayClient
from tests.integration.stack import Stack, free_port

TRANSPORTS = ("amqp", "sqs")
# moto answers one request in ~7-12 ms and a workflow makes dozens (send, receive, delete per hop, the
# gateway's reply): 2000 workflows per phase would take many minutes there.
DEFAULT_N = {"amqp": 2000, "sqs": 200}
DEFAULT_CAMPAIGN_FANS = {"amqp": 5000, "sqs": 500}
DEFAULT_STOP_FANS = {"amqp": 500, "sqs": 200}
DEFAULT_PRIORITY_BACKLOG = {"amqp": 5000, "sqs": 500}
SQS_REGION = "us-east-1"
# The one-at-a-time ?wait=true phase: n/4 POSTs, at most this many (a latency figure, not a load).
ONE_AT_A_TIME_MAX = 250


@dataclass(frozen=True)
class Broker:
    url: str  # what every service gets as BUS_URL
    pid: int | None = None  # moto's server, when the bench runs it


@asynccontextmanager
async def open_broker(transport: str, workdir: Path) -> AsyncIterator[Broker]:
    """The machine's RabbitMQ, or moto's server for the run (with dummy credentials the services inherit)."""
    if transport == "amqp":
        yield Broker(os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
        return
    os.environ.update(DUMMY_CREDENTIALS, AWS_DEFAULT_REGION=SQS_REGION)
    os.environ.pop("AWS_PROFILE", None)
    with (workdir / "moto.log").open("w+b") as log:
        server = MotoServer(log)
        try:
            endpoint = await asyncio.to_thread(server.start)
            assert server.process is not None
            yield Broker(f"sqs://?region={SQS_REGION}&endpoint_url={endpoint}", server.process.pid)
        finally:
            server.stop()


@asynccontextmanager
async def running(simulator: SimulatorProcess) -> AsyncIterator[SimulatorProcess]:
    await simulator.start()
    try:
        yield simulator
    finally:
        await simulator.stop()


async def drop_keys(redis_url: str, prefix: str) -> None:
    """The delivery limiters' Redis keys of this run (they expire anyway, except the planner's epoch)."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        async for key in client.scan_iter(match=f"{prefix}*"):
            await client.unlink(key)
    finally:
        await client.aclose()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "-n", type=int, help="workflows per phase (default: 2000 on amqp, 200 on sqs); campaign: fans (5000, 500)"
    )
    parser.add_argument("-c", "--concurrency", type=int, default=32, help="in flight (default: 32)")
    parser.add_argument("--transport", choices=TRANSPORTS, default="amqp", help="the bus (default: amqp)")
    parser.add_argument("--mode", choices=MODES, default=GENERATION, help="what a workflow does (default: generation)")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="generation/delivery: export every span and print the one-at-a-time phase's median timeline "
        "(tests/bench/timeline.py; costs CPU: the other numbers are not comparable)",
    )
    args = parser.parse_args()
    if args.trace and args.mode not in (GENERATION, DELIVERY):
        parser.error("--trace needs --mode generation or delivery (the phases with one workflow at a time)")
    if args.n is None:
        defaults = {
            CAMPAIGN: DEFAULT_CAMPAIGN_FANS,
            STOP: DEFAULT_STOP_FANS,
            PRIORITY: DEFAULT_PRIORITY_BACKLOG,
            FAIRNESS: DEFAULT_CAMPAIGN_FANS,
        }.get(args.mode, DEFAULT_N)
        args.n = defaults[args.transport]
        if args.transport != "amqp":
            print(f"note: -n {args.n} by default on {args.transport} (moto is slow); -n overrides", file=sys.stderr)
    return args


async def measure(stack: Stack, workload: Workload, args: argparse.Namespace, broker: Broker) -> dict[str, Any]:
    """The three phases (see the module docstring) on a running stack."""
    n, c, dsn = args.n, args.concurrency, stack.database_url
    warm_ids, _ = await submit_all(workload, min(WARMUP, n // 2), c, wait=True)
    pids = {name: p.pid for name, p in stack.procs.items()}
    before = {name: proc_usage(pid) for name, pid in pids.items()}
    broker_before = proc_usage(broker.pid)[0] if broker.pid else 0.0
    servers_before = servers_cpu()

    t0 = time.perf_counter()
    ids, _ = await submit_all(workload, n, c, wait=False)
    burst = await wait_terminal(dsn, ids)
    wall = time.perf_counter() - t0
    after = {name: proc_usage(pid) for name, pid in pids.items()}
    servers_after = servers_cpu()
    broker_cpu = proc_usage(broker.pid)[0] - broker_before if broker.pid else None
    workflows_per_s = len(burst) / (max(f.completed for f in burst) - min(f.created for f in burst))

    t0 = time.perf_counter()
    fixed = await at_fixed_concurrency(workload, dsn, n, c)
    fixed_per_s = len(fixed) / (time.perf_counter() - t0)

    wait_before = {name: proc_usage(pid) for name, pid in pids.items()}
    wait_servers_before = servers_cpu()
    t0 = time.perf_counter()
    wait_ids, wait_lat = await submit_all(workload, n // 2, c, wait=True)
    wait_wall = time.perf_counter() - t0
    wait_after = {name: proc_usage(pid) for name, pid in pids.items()}
    wait_servers_after = servers_cpu()
    one_ids, one_lat = await submit_all(workload, min(n // 4, ONE_AT_A_TIME_MAX), 1, wait=True)
    # A ?wait=true that timed out answered 202: its workflow may still be delivering.
    late = await wait_terminal(dsn, warm_ids + wait_ids + one_ids)
    failed = sum(f.status == "failed" for f in burst + fixed + late)
    if failed:
        print(f"warning: {failed} workflows failed", file=sys.stderr)

    latencies = [f.latency_ms for f in fixed]
    burst_latencies = [f.latency_ms for f in burst]
    result: dict[str, Any] = {
        "workflows_per_s": round(workflows_per_s, 1),
        "wall_s": round(wall, 2),
        "p50_ms": pct(latencies, 0.50),
        "p95_ms": pct(latencies, 0.95),
        "p99_ms": pct(latencies, 0.99),
        "fixed_workflows_per_s": round(fixed_per_s, 1),
        "burst_p50_ms": pct(burst_latencies, 0.50),
        "burst_p99_ms": pct(burst_latencies, 0.99),
        "wait_p50_ms": pct(wait_lat, 0.50),
        "wait_p95_ms": pct(wait_lat, 0.95),
        "wait_p99_ms": pct(wait_lat, 0.99),
        "wait_workflows_per_s": round(len(wait_lat) / wait_wall, 1),
        "wait_cpu_ms": {k: round((wait_after[k][0] - wait_before[k][0]) * 1000 / len(wait_lat), 2) for k in pids},
        "wait_servers_cpu_ms": per_each(wait_servers_before, wait_servers_after, len(wait_lat)),
        "wait1_p50_ms": pct(one_lat, 0.50),
        "wait1_p99_ms": pct(one_lat, 0.99),
        "failed": failed,
        "cpu_s": {k: round(after[k][0] - before[k][0], 2) for k in after},
        "servers_cpu_ms": per_each(servers_before, servers_after, len(burst)),
        "peak_rss_mib": {k: round(after[k][1], 1) for k in after},
    }
    if broker_cpu is not None:
        result["moto_cpu_s"] = round(broker_cpu, 2)
    return result


def per_each(before: dict[str, float], after: dict[str, float], count: int) -> dict[str, float]:
    """CPU ms per workflow (or chain) of each server between two `servers_cpu()` readings."""
    return {k: round((after[k] - before.get(k, 0.0)) * 1000 / count, 2) for k in after}


def report(result: dict[str, Any], breaches: list[str]) -> None:
    print(f"\n{'metric':<28} value")
    for key, value in result.items():
        if not isinstance(value, dict):
            print(f"{key:<28} {value}")
    for key, value in result.items():
        if isinstance(value, dict) and key not in ("cpu_s", "peak_rss_mib"):
            print(f"{key:<28} {value}")
    if "cpu_s" in result:  # not measured by --mode stop
        per = "delivery" if result["mode"] == CAMPAIGN else "workflow"
        print(f"{'service':<28} {'cpu_s':>8} {'peak_rss_mib':>13} {'cpu_ms/' + per:>16}")
        for name, cpu in result["cpu_s"].items():
            print(f"{name:<28} {cpu:>8} {result['peak_rss_mib'][name]:>13} {cpu * 1000 / result['n']:>16.2f}")
    for breach in breaches:
        print(f"INVARIANT BROKEN: {breach}")
    print(json.dumps(result))


async def main() -> int:
    args = parse_args()
    dsn = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
    workdir = Path(tempfile.mkdtemp(prefix="ho-bench-"))
    run_tag = uuid.uuid4().hex[:6]
    secret = secrets.token_urlsafe(32)
    env = stack_env(args, secret)
    result: dict[str, Any] = {
        "transport": args.transport,
        "mode": args.mode,
        "n": args.n,
        "concurrency": args.concurrency,
    }
    breaches: list[str] = []
    async with AsyncExitStack() as resources:
        broker = await resources.enter_async_context(open_broker(args.transport, workdir))
        llm = SimulatorProcess("llm", free_port(), workdir / "llm-simulator.log")
        await resources.enter_async_context(running(llm))
        env.update(
            AZURE_OPENAI_ENDPOINT=llm.url,
            AZURE_OPENAI_API_KEY="bench",
            OPENAI_BASE_URL=f"{llm.url}/v1",
            OPENAI_API_KEY="bench",
        )
        platform: SimulatorProcess | None = None
        if args.mode in DELIVERING:
            limit = FAIR_LIMIT if args.mode == FAIRNESS else LIFTED_ACCOUNT_LIMIT
            platform = SimulatorProcess(
                "platform", free_port(), workdir / "platform-simulator.log", platform_simulator_env()
            )
            await resources.enter_async_context(running(platform))
            key_prefix = f"bench:{run_tag}:"
            env.update(delivery_env(platform, key_prefix, limit))
            resources.push_async_callback(drop_keys, redis_url, key_prefix)
        async with Stack(broker.url, dsn, redis_url, workdir, env=env) as stack:
            await asyncio.gather(*(stack.start(s, env=service_env(args.mode, s)) for s in SERVICES[args.mode]))
            if args.mode == STOP:
                await stack.start("of_sender", name="of_sender-2", env=service_env(args.mode, "of_sender"))
            await stack.start("gateway")
            workload = Workload.create(args.mode, f"http://127.0.0.1:{env['GATEWAY_PORT']}", secret, run_tag)
            try:
                if args.mode == STOP:
                    assert platform is not None
                    measured, breaches = await measure_stop(workload, platform, args.n, args.concurrency, secret)
                elif args.mode == PRIORITY:
                    critical = GatewayClient(workload.clients[0].base_url, secret, user=f"bench-{run_tag}-critical")
                    try:
                        measured = await measure_priority(
                            workload, stack.database_url, args.n, args.concurrency, critical
                        )
                    finally:
                        await critical.close()
                elif args.mode == FAIRNESS:
                    assert platform is not None
                    measured, breaches = await measure_fairness(
                        workload, platform, stack.database_url, args.n, args.concurrency
                    )
                elif args.mode == CAMPAIGN:
                    assert platform is not None
                    measured, breaches = await measure_campaign(
                        stack, workload, platform, args.n, args.concurrency, broker.url
                    )
                else:
                    measured = await measure(stack, workload, args, broker)
            finally:
                await workload.close()
            if platform is not None and args.mode == DELIVERY:
                check = await check_deliveries(platform, workload.fans)
                if not check.exactly_once:
                    print(f"warning: deliveries not exactly once: {check}", file=sys.stderr)
                measured.update(
                    delivered=check.delivered,
                    deliveries_expected=check.expected,
                    delivered_twice=check.twice,
                    platform_outcomes=check.outcomes,
                )
        if args.mode not in (STOP, FAIRNESS):
            cpu_before, servers_before = time.process_time(), servers_cpu()
            raw = await raw_chains(broker.url, args.n, args.concurrency, HOPS[args.mode])
            raw_cpu = {"bench": round((time.process_time() - cpu_before) * 1000 / args.n, 2)}
            raw_cpu.update(per_each(servers_before, servers_cpu(), args.n))
    result.update(measured)
    if args.mode not in (STOP, FAIRNESS):
        speed = result[{CAMPAIGN: "deliveries_per_s", PRIORITY: "low_per_s_after"}.get(args.mode, "workflows_per_s")]
        result.update(hops=HOPS[args.mode], raw_chain_per_s=round(raw, 1), ratio=round(speed / raw, 3))
        result["raw_chain_cpu_ms"] = raw_cpu
    result["machine"] = machine()
    print(f"(logs in {workdir})")
    if args.trace:
        print_timeline(timeline(workdir))
    report(result, breaches)
    return 1 if breaches else 0


def stack_env(args: argparse.Namespace, secret: str) -> dict[str, str]:
    """What every service of the run is started with (the bench adds the simulators' addresses)."""
    env = {
        "GATEWAY_JWT_SECRET": secret,
        "GATEWAY_PORT": str(free_port()),
        "LOG_LEVEL": "warning",
        # The priority mode measures the lanes as deployed (the default 32: bulk takes 8 at once).
        "BUS_PREFETCH": "32" if args.mode == PRIORITY else "64",
        "GATEWAY_RATE_LIMIT_RPS": "0",  # one bench user sends the whole load: the per-user limit is not measured
    }
    if args.trace:
        env["OTEL_TRACES_EXPORTER"] = "console"  # into each service's log, read back by tests/bench/timeline.py
    return env


def service_env(mode: str, service: str) -> dict[str, str]:
    """The router logs at info in campaign mode: its write conflicts are info events the bench counts."""
    return {"LOG_LEVEL": "info"} if mode == CAMPAIGN and service == "router" else {}


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
