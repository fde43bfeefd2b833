"""The chaos scenario: the whole distributed stack under steady load, one fault after another, then the
invariants. `python -m tests.chaos.run` prints it; tests/chaos/test_chaos.py runs the short version.

With the faults starts one campaign (a single POST to `campaign_fans` fans, from an account of its own): it
runs at that account's limit through the kills, restarts and outages that follow, and is held to the
campaign invariants at the end (every fan exactly once, a truthful final status), as is the whole run to
an empty dead-letter queue."""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from libs.simulators import Arrival
from tests.chaos import invariants
from tests.chaos.campaign import (
    campaign_body,
    campaign_fans,
    drain_dead_letters,
    final_status,
    listed_deliveries,
    post_campaign,
)
from tests.chaos.invariants import Verdict
from tests.chaos.load import Accepted, Load, LoadShape, fetch_states, probe
from tests.chaos.servers import SimulatorProcess, restart_postgres, restart_rabbitmq
from tests.delivery.test_compliance_processes import PrivateRedis
from tests.integration.client import GatewayClient
from tests.integration.stack import Stack, free_port

SERVICES = ("router", "azure_worker", "openai_worker", "rate_limiter", "of_sender", "cost_tracker", "gateway")
RESTART_SERVERS_ENV = "CHAOS_RESTART_SERVERS"
# Short rate windows so a run sees many of them: 50 sends per 5 s per account, 1 s between two to one fan.
# The campaign's account sends at that limit all along (1,000 fans in about 105 s); the steady load's
# accounts stay far below it, and its few fans (LoadShape.recipients) keep meeting the spacing.
LIMIT, WINDOW_S, GAP_S, MARGIN_S = 50, 5.0, 1.0, 0.25
# Provider calls give up quickly, so a hung provider shows as a timeout (and a fallback) within the run.
PROVIDER_TIMEOUT_S = 4.0
CAMPAIGN_ACCOUNT = "chaos-campaign"
CAMPAIGN_POST_S = 60.0  # the campaign's POST is retried (same Idempotency-Key) this long through the faults
CAMPAIGN_STATUS_S = 30.0  # after the drain: how long reading its final status may take


@dataclass
class Plan:
    """How long each phase lasts: the full run and the short one differ only here."""

    platform_outage_s: float = 30.0
    hang_s: float = 15.0
    settle_s: float = 3.0  # steady load between two faults
    kill_down_s: float = 1.0  # how long a killed service stays dead
    probe_timeout_s: float = 60.0
    drain_timeout_s: float = 180.0
    restart_servers: bool = False
    campaign_fans: int = 1000  # 0: no campaign
    shape: LoadShape = field(default_factory=LoadShape)

    @classmethod
    def short(cls) -> Plan:
        shape = LoadShape(generations_per_s=3.0, deliveries_per_s=0.4)
        return cls(platform_outage_s=5.0, hang_s=5.0, settle_s=0.5, kill_down_s=0.2, probe_timeout_s=30.0,
                   drain_timeout_s=60.0, campaign_fans=200, shape=shape)  # fmt: skip


@dataclass
class FaultRecord:
    name: str
    duration_s: float  # from injecting the fault to the end of the repair (restart done, server back)
    recovery_s: float | None  # from the end of the repair to a fresh workflow completed; None: none did
    accepted_during: int
    refused_during: int


@dataclass
class Report:
    faults: list[FaultRecord] = field(default_factory=list)
    verdict: Verdict = field(default_factory=Verdict)
    skipped: list[str] = field(default_factory=list)
    workdir: Path | None = None
    total_s: float = 0.0


def stack_env(llm: SimulatorProcess, platform: SimulatorProcess) -> dict[str, str]:
    return {
        "AZURE_OPENAI_ENDPOINT": llm.url,
        "AZURE_OPENAI_API_KEY": "chaos",
        "OPENAI_BASE_URL": f"{llm.url}/v1",
        "OPENAI_API_KEY": "chaos",
        "AZURE_TIMEOUT_S": str(PROVIDER_TIMEOUT_S),
        "OPENAI_TIMEOUT_S": str(PROVIDER_TIMEOUT_S),
        "GATEWAY_JWT_SECRET": secrets.token_urlsafe(32),
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_RATE_LIMIT_RPS": "0",  # the load polls statuses as fast as it can: not what chaos measures
        "ONLYFANS_API_URL": platform.url,
        "ONLYFANS_API_TOKEN": "chaos-token",
        "OF_ACCOUNT_LIMIT": str(LIMIT),
        "OF_ACCOUNT_WINDOW_S": str(WINDOW_S),
        "OF_RECIPIENT_MIN_INTERVAL_S": str(GAP_S),
        "OF_SAFETY_MARGIN_S": str(MARGIN_S),
        "RATE_LIMITER_DOWN_RETRY_S": "0.5",
        # Enough retries (1, 2, 4, 8, 8, … s) to ride out the platform outage instead of failing deliveries.
        "OF_MAX_RETRIES": "8",
        "OF_RETRY_BASE_S": "1",
        "OF_RETRY_CAP_S": "8",
        "OF_RATE_LIMITED_DELAY_S": "2",
        "LOG_LEVEL": "info",
    }


class Chaos:
    def __init__(
        self, plan: Plan, workdir: Path, say: Callable[[str], None], *, amqp: str | None = None, dsn: str | None = None
    ) -> None:
        self.plan = plan
        self.workdir = workdir
        self.say = say
        self.amqp = amqp or os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
        self.dsn = dsn or os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
        self.llm = SimulatorProcess("llm", free_port(), workdir / "llm-simulator.log")
        self.platform = SimulatorProcess(
            "platform",
            free_port(),
            workdir / "platform-simulator.log",
            env={
                "PLATFORM_SIMULATOR_ACCOUNT_LIMIT": str(LIMIT),
                "PLATFORM_SIMULATOR_WINDOW_S": str(WINDOW_S),
                "PLATFORM_SIMULATOR_RECIPIENT_MIN_INTERVAL_S": str(GAP_S),
                "PLATFORM_SIMULATOR_TOKEN": "chaos-token",
            },
        )
        self.redis = PrivateRedis(free_port())
        self.report = Report(workdir=workdir)
        self.database_url = ""  # the stack's database, once it exists
        self.campaign_fans = campaign_fans(f"chaos-{uuid.uuid4().hex[:6]}", plan.campaign_fans)
        self.campaign_id: str | None = None  # once its POST was accepted

    async def run(self) -> Report:
        started = time.monotonic()
        await asyncio.gather(self.llm.start(), self.platform.start(), self.redis.start())
        try:
            env = stack_env(self.llm, self.platform)
            async with Stack(self.amqp, self.dsn, self.redis.url, self.workdir, env=env) as stack:
                await asyncio.gather(*(stack.start(s) for s in SERVICES if s != "gateway"))
                await stack.start("gateway")
                self.database_url = stack.database_url
                self.say(f"stack up: {len(SERVICES)} services, database {stack.database}, logs in {self.workdir}")
                gateway = f"http://127.0.0.1:{env['GATEWAY_PORT']}"
                load = Load.for_accounts(gateway, env["GATEWAY_JWT_SECRET"], self.plan.shape)
                load.clients[CAMPAIGN_ACCOUNT] = GatewayClient(gateway, env["GATEWAY_JWT_SECRET"], CAMPAIGN_ACCOUNT)
                try:
                    await self._under_load(stack, load)
                finally:
                    await load.close()
        finally:
            await asyncio.gather(self.llm.stop(), self.platform.stop(), self.redis.stop(), return_exceptions=True)
        self.report.total_s = time.monotonic() - started
        return self.report

    async def _under_load(self, stack: Stack, load: Load) -> None:
        stop = asyncio.Event()
        driver = asyncio.create_task(load.run(stop))
        await asyncio.sleep(self.plan.settle_s * 2)
        campaign = asyncio.create_task(self._campaign(load))  # its POST meets the first fault, the router's kill
        for name in SERVICES:
            await self._fault(
                f"kill -9 {name}", load, self._kill(stack, name), delivery=name in ("of_sender", "rate_limiter")
            )
        if self.plan.restart_servers:
            await self._fault("restart RabbitMQ", load, restart_rabbitmq())
            await self._fault("restart PostgreSQL", load, restart_postgres(self.dsn))
        else:
            self.report.skipped.append(
                f"RabbitMQ and PostgreSQL restarts (shared servers; set {RESTART_SERVERS_ENV}=1)"
            )
        await self._fault("restart Redis (data lost)", load, self.redis.restart(), delivery=True)
        await self._fault(f"platform refuses connections {self.plan.platform_outage_s:g}s", load,
                          self._platform_outage(), delivery=True)  # fmt: skip
        await self._fault(f"azure hangs {self.plan.hang_s:g}s", load, self._hang())
        stop.set()
        await driver
        await campaign
        self.say(f"load stopped: {len(load.accepted)} accepted, refused {dict(load.refused)}; draining")
        await self._check(stack, load)

    async def _campaign(self, load: Load) -> None:
        """POST the campaign until it is accepted; from then on it is one of the load's accepted workflows."""
        if not self.campaign_fans:
            return
        body = campaign_body(self.campaign_fans, "chaos campaign")
        try:
            workflow_id = await post_campaign(load.clients[CAMPAIGN_ACCOUNT], body, uuid.uuid4().hex, CAMPAIGN_POST_S)
        except RuntimeError as exc:
            self.report.verdict.breaches.append(f"the campaign was never accepted: {exc}")
            return
        self.campaign_id = workflow_id
        accepted = Accepted(uuid.UUID(workflow_id), CAMPAIGN_ACCOUNT, tuple(self.campaign_fans), time.time())
        load.accepted.append(accepted)
        self.say(f"campaign of {len(self.campaign_fans)} fans accepted: {workflow_id}")

    async def _kill(self, stack: Stack, name: str) -> None:
        await stack.kill(name)
        await asyncio.sleep(self.plan.kill_down_s)
        await stack.restart(name)

    async def _platform_outage(self) -> None:
        await self.platform.stop()
        await asyncio.sleep(self.plan.platform_outage_s)
        await self.platform.start()

    async def _hang(self) -> None:
        await self.llm.admin("POST", "/_sim/faults", {"kind": "hang", "target": "azure", "count": None})
        await asyncio.sleep(self.plan.hang_s)
        await self.llm.admin("DELETE", "/_sim/faults")

    async def _fault(self, name: str, load: Load, repair: Awaitable[None], *, delivery: bool = False) -> None:
        accepted, refused = len(load.accepted), sum(load.refused.values())
        t0 = time.monotonic()
        await repair
        duration = time.monotonic() - t0
        recovery = await probe(load, self.database_url, delivery=delivery, timeout=self.plan.probe_timeout_s)
        record = FaultRecord(name, duration, recovery, len(load.accepted) - accepted,
                             sum(load.refused.values()) - refused)  # fmt: skip
        self.report.faults.append(record)
        shown = "NOT RECOVERED" if recovery is None else f"{recovery:.2f}s"
        self.say(f"{name:<40} fault {duration:6.2f}s  recovered in {shown:>8}  "
                 f"accepted {record.accepted_during:4}  refused {record.refused_during:3}")  # fmt: skip
        await asyncio.sleep(self.plan.settle_s)

    async def _check(self, stack: Stack, load: Load) -> None:
        ids = [a.workflow_id for a in load.accepted]
        deadline = time.monotonic() + self.plan.drain_timeout_s
        t0 = time.monotonic()
        while True:
            states = await fetch_states(stack.database_url, ids)
            open_ = [i for i in ids if states.get(i) not in ("completed", "failed")]
            if not open_ or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        self.say(f"drained in {time.monotonic() - t0:.1f}s ({len(open_)} still open)")
        await self._usage_settled(stack.database_url)
        arrivals = [Arrival(**a) for a in await self.platform.all_arrivals()]
        verdict = self.report.verdict
        verdict.merge(invariants.terminal_states(load.accepted, states))
        conn = await asyncpg.connect(stack.database_url)
        try:
            orphans = await invariants.orphans(conn, load.accepted)
            verdict.merge(invariants.deliveries(load.accepted, orphans, arrivals, (LIMIT, WINDOW_S, GAP_S)))
            verdict.merge(await invariants.sent_but_not_delivered(conn, load.accepted, arrivals))
            verdict.merge(await invariants.costs(conn, load.accepted))
            verdict.figures["failure_reasons"] = await failure_reasons(conn, ids)
        finally:
            await conn.close()
        if self.campaign_id is not None:
            client = load.clients[CAMPAIGN_ACCOUNT]
            view = await final_status(client, self.campaign_id, CAMPAIGN_STATUS_S)
            listed = await listed_deliveries(client, self.campaign_id) if view is not None else None
            verdict.merge(invariants.campaign(self.campaign_fans, view, listed, arrivals))
        verdict.merge(invariants.dead_letters(await drain_dead_letters(self.amqp, stack.namespace)))
        verdict.figures["post_refused"] = dict(load.refused)
        if verdict.breaches:
            self.say(f"logs kept in {self.workdir}")

    async def _usage_settled(self, dsn: str) -> None:
        """usage.recorded may trail workflow.completed: wait until the entry count stops moving."""
        conn = await asyncpg.connect(dsn)
        try:
            last = -1
            for _ in range(20):
                count = await conn.fetchval("SELECT count(*) FROM cost_tracker.cost_entries")
                if count == last:
                    return
                last = count
                await asyncio.sleep(0.5)
        finally:
            await conn.close()


async def failure_reasons(conn: asyncpg.Connection, ids: list[Any]) -> dict[str, int]:
    rows = await conn.fetch(
        "SELECT coalesce(error->>'type', error->>'error_type', 'unknown') AS reason, count(*) AS n"
        " FROM router.hybrid_workflows WHERE status = 'failed' AND workflow_id = ANY($1::uuid[]) GROUP BY 1",
        ids,
    )
    return {r["reason"]: r["n"] for r in rows}
