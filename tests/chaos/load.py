"""Steady load through the gateway, and what the chaos suite remembers of it: every accepted workflow
(a 202 with its id), every refused or failed POST, and probes that time how long the system takes to
complete a fresh workflow after a fault."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from tests.integration.client import GatewayClient

POST_TIMEOUT_S = 15.0
MAX_IN_FLIGHT = 24
PROBE_ACCOUNT = "chaos-probe"
TERMINAL = ("completed", "failed")


@dataclass(frozen=True)
class Accepted:
    workflow_id: uuid.UUID
    account: str
    recipients: tuple[str, ...]
    at: float


@dataclass
class LoadShape:
    """How much load, spread over how many creator accounts and fans."""

    generations_per_s: float = 4.0
    # Workflows with sendToOnlyFans, one or two recipients each, over 3 fans shared by every account: a third
    # of what the fans' spacing allows (one send per 1.25 s each) and far below the accounts' limit, so a
    # backlog is the faults' doing, not the load's.
    deliveries_per_s: float = 0.5
    accounts: int = 3
    recipients: int = 3


@dataclass
class Load:
    clients: dict[str, GatewayClient]
    shape: LoadShape
    accepted: list[Accepted] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)  # "503", "timeout", "ClientConnectorError"...
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def for_accounts(cls, base_url: str, secret: str, shape: LoadShape) -> Load:
        accounts = [f"chaos-{i}" for i in range(shape.accounts)] + [PROBE_ACCOUNT]
        return cls({a: GatewayClient(base_url, secret, user=a) for a in accounts}, shape)

    async def close(self) -> None:
        for client in self.clients.values():
            await client.close()

    def body(self, n: int, recipients: tuple[str, ...]) -> dict[str, Any]:
        # Unique data per workflow: the simulated provider's text is then unique too, which lets the referee
        # tell two workflows' messages apart from one message sent twice.
        kind = "content_planning" if n % 3 == 0 else "message_generation"
        body: dict[str, Any] = {"type": kind, "data": {"fanName": f"fan{n}", "topic": f"chaos run item {n}"}}
        if recipients:
            body.update(sendToOnlyFans=True, recipientIds=list(recipients))
        return body

    async def submit(self, account: str, recipients: tuple[str, ...]) -> uuid.UUID | None:
        """POST one workflow; remember it when accepted, count the refusal otherwise."""
        n = next(self._seq)
        try:
            code, answer = await asyncio.wait_for(
                self.clients[account].submit(self.body(n, recipients)), POST_TIMEOUT_S
            )
        except TimeoutError:
            self.refused["timeout"] += 1
            return None
        except Exception as exc:  # a killed gateway or broker shows as any client error
            self.refused[type(exc).__name__] += 1
            return None
        if code != 202:
            self.refused[str(code)] += 1
            return None
        workflow_id = uuid.UUID(answer["data"]["workflowId"])
        self.accepted.append(Accepted(workflow_id, account, recipients, time.time()))
        return workflow_id

    def _spawn(self, account: str, recipients: tuple[str, ...]) -> None:
        if len(self._tasks) >= MAX_IN_FLIGHT:
            self.refused["client_backpressure"] += 1
            return
        task = asyncio.create_task(self.submit(account, recipients))  # type: ignore[arg-type]
        self._tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]

    async def run(self, stop: asyncio.Event) -> None:
        """Fire workflows at the configured rates until `stop` is set, then wait for the POSTs in flight."""
        shape = self.shape
        tick = 0.1
        gen_credit = del_credit = 0.0
        i = 0
        while not stop.is_set():
            gen_credit += shape.generations_per_s * tick
            del_credit += shape.deliveries_per_s * tick
            while gen_credit >= 1:
                gen_credit -= 1
                self._spawn(f"chaos-{i % shape.accounts}", ())
                i += 1
            while del_credit >= 1:
                del_credit -= 1
                fans = [f"fan-{(i + k) % shape.recipients}" for k in range(1 + i % 2)]
                self._spawn(f"chaos-{i % shape.accounts}", tuple(fans))
                i += 1
            await asyncio.sleep(tick)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


async def fetch_states(dsn: str, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The router's status of each workflow found in its table."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT workflow_id, status FROM router.hybrid_workflows WHERE workflow_id = ANY($1::uuid[])", ids
        )
    finally:
        await conn.close()
    return {r["workflow_id"]: r["status"] for r in rows}


async def probe(load: Load, dsn: str, *, delivery: bool, timeout: float) -> float | None:
    """Seconds until a fresh workflow (POSTed again and again, each given a few seconds) completes; None when
    none did within `timeout`. The probe account has no other traffic, so it measures recovery, not backlog."""
    started = time.monotonic()
    fan = f"probe-{uuid.uuid4().hex[:6]}"  # a fresh fan every probe: no per-fan spacing to wait for
    while time.monotonic() - started < timeout:
        workflow_id = await load.submit(PROBE_ACCOUNT, (fan,) if delivery else ())
        attempt_end = time.monotonic() + min(15.0, timeout)
        while workflow_id is not None and time.monotonic() < attempt_end:
            try:
                status = (await fetch_states(dsn, [workflow_id])).get(workflow_id)
            except (OSError, asyncpg.PostgresError):
                status = None
            if status == "completed":
                return time.monotonic() - started
            if status == "failed":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)
    return None
