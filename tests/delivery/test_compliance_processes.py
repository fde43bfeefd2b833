"""Compliance across processes: 3 rate-limiter and 2 of-sender replicas on RabbitMQ, PostgreSQL and a private
Redis, sending to the platform simulator, which refuses (429) anything over its limits. A test process
stands in for the router: it publishes delivery.requested and collects the reports.

Limits are short (3 per 5 s per account, 2 s per fan, 0.25 s safety margin) so a run takes seconds. The
private Redis is what lets a test really restart it (without persistence) in the middle of a run.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from contracts import Envelope
from contracts.messages import DeliveryCompleted, DeliveryFailed, DeliveryRequested, DeliveryScheduled
from contracts.routing import ROUTER
from libs.bus.amqp import AmqpBus
from libs.simulators import Arrival, PlatformFaultKind, PlatformLimits, PlatformSimulator
from tests.delivery.compliance import all_violations, by_account, pace
from tests.integration.stack import Stack, free_port

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

LIMIT, WINDOW_S, GAP_S, MARGIN_S = 3, 5.0, 2.0, 0.25
RATE_LIMITERS, OF_SENDERS = 3, 2
REDIS_READY_S = 10.0


@dataclass
class PrivateRedis:
    """A redis-server of this module's own, without persistence: restarting it loses everything."""

    port: int
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self.process = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        client = aioredis.Redis.from_url(self.url)
        deadline = time.monotonic() + REDIS_READY_S
        try:
            while True:
                try:
                    await client.ping()
                    return
                except (aioredis.ConnectionError, OSError):
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def restart(self) -> None:
        """SIGKILL and start again, empty: a restart without persistence."""
        await self.stop()
        await self.start()


@dataclass
class FakeRouter:
    """Subscribes as the router: collects delivery reports by delivery id."""

    bus: AmqpBus
    completed: dict[uuid.UUID, DeliveryCompleted] = field(default_factory=dict)
    failed: dict[uuid.UUID, DeliveryFailed] = field(default_factory=dict)
    scheduled: dict[uuid.UUID, list[DeliveryScheduled]] = field(default_factory=lambda: defaultdict(list))

    async def start(self) -> None:
        types = (DeliveryScheduled.TYPE, DeliveryCompleted.TYPE, DeliveryFailed.TYPE)
        await self.bus.subscribe(ROUTER, dict.fromkeys(types, self._collect))

    async def _collect(self, envelope: Envelope) -> None:
        report = envelope.payload
        if isinstance(report, DeliveryCompleted):
            self.completed.setdefault(report.delivery_id, report)
        elif isinstance(report, DeliveryFailed):
            self.failed.setdefault(report.delivery_id, report)
        elif isinstance(report, DeliveryScheduled):
            self.scheduled[report.delivery_id].append(report)

    async def request(self, account: str, fan: str) -> uuid.UUID:
        delivery_id = uuid.uuid4()
        payload = DeliveryRequested(delivery_id=delivery_id, account_id=account, recipient_id=fan, text=f"hi {fan}")
        await self.bus.publish(Envelope.new(payload, workflow_id=uuid.uuid4(), user_id=account))
        return delivery_id

    async def finished(self, ids: list[uuid.UUID], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(i in self.completed or i in self.failed for i in ids):
            done = sum(i in self.completed or i in self.failed for i in ids)
            assert time.monotonic() < deadline, f"{done} of {len(ids)} deliveries finished in {timeout}s"
            await asyncio.sleep(0.1)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def redis_server() -> AsyncIterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.fail("these tests restart a Redis of their own: put redis-server on PATH (apt-get install redis-server)")
    server = PrivateRedis(free_port())
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sim() -> AsyncIterator[PlatformSimulator]:
    limits = PlatformLimits(account_limit=LIMIT, window_s=WINDOW_S, recipient_min_interval_s=GAP_S)
    async with PlatformSimulator(limits, token="platform-token") as simulator:
        yield simulator


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(
    amqp_url: str,
    postgres_dsn: str,
    redis_server: PrivateRedis,
    sim: PlatformSimulator,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    env = {
        "ONLYFANS_API_URL": sim.url,
        "ONLYFANS_API_TOKEN": "platform-token",
        "OF_ACCOUNT_LIMIT": str(LIMIT),
        "OF_ACCOUNT_WINDOW_S": str(WINDOW_S),
        "OF_RECIPIENT_MIN_INTERVAL_S": str(GAP_S),
        "OF_SAFETY_MARGIN_S": str(MARGIN_S),
        "RATE_LIMITER_DOWN_RETRY_S": "0.25",
        "OF_RETRY_BASE_S": "0.2",
        # A platform 429 (a violation) is re-tried soon, so it shows as a refused send, not as a timeout.
        "OF_RATE_LIMITED_DELAY_S": "1",
    }
    workdir: Path = tmp_path_factory.mktemp("delivery")
    async with Stack(amqp_url, postgres_dsn, redis_server.url, workdir, env=env) as running:
        names = [("rate_limiter", f"rate-limiter-{i}") for i in range(RATE_LIMITERS)]
        names += [("of_sender", f"of-sender-{i}") for i in range(OF_SENDERS)]
        await asyncio.gather(*(running.start(package, name=name) for package, name in names))
        yield running


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def router(stack: Stack, amqp_url: str) -> AsyncIterator[FakeRouter]:
    bus = AmqpBus(amqp_url, namespace=stack.namespace)
    await bus.connect()
    fake = FakeRouter(bus)
    await fake.start()
    yield fake
    await bus.close(grace_s=1)


def delivered_to(sim: PlatformSimulator, prefix: str) -> list[Arrival]:
    return [a for a in sim.delivered() if a.account_id.startswith(prefix)]


def assert_each_delivered_once(sim: PlatformSimulator, router: FakeRouter, ids: list[uuid.UUID], prefix: str) -> None:
    """Every delivery completed, and the fans got exactly one message per delivery; nothing was refused."""
    assert not [router.failed[i] for i in ids if i in router.failed]
    keys = [a.idempotency_key for a in delivered_to(sim, prefix)]
    assert sorted(keys) == sorted(str(i) for i in ids)  # type: ignore[type-var]
    refused = [a for a in sim.arrivals() if a.account_id.startswith(prefix) and a.outcome == "rate_limited"]
    assert refused == [], f"the platform refused {len(refused)} sends as over its limits"


class TestCompliance:
    async def test_replicas_keep_every_window_and_keep_pace(
        self, stack: Stack, router: FakeRouter, sim: PlatformSimulator
    ) -> None:
        """60 deliveries over 6 accounts and 18 fans, all at once: the platform's arrival log shows no
        window over the limit and no fan spacing under the minimum, every delivery arrives exactly once, and
        with a backlog each account sends at ≥ 90 % of the allowed rate."""
        ids = [await router.request(f"pace-{i % 6}", f"fan-{i // 6 % 3}") for i in range(60)]
        await router.finished(ids, timeout=45)
        delivered = delivered_to(sim, "pace-")
        assert all_violations(delivered, LIMIT, WINDOW_S, GAP_S) == []
        assert_each_delivered_once(sim, router, ids, "pace-")
        paces = {account: pace(times, LIMIT, WINDOW_S) for account, times in by_account(delivered).items()}
        print(f"\npace vs the limit ({LIMIT} per {WINDOW_S:g}s), per account: {paces}")
        assert min(paces.values()) >= 0.9, paces

    async def test_a_redis_restart_mid_run_opens_no_burst(
        self, stack: Stack, router: FakeRouter, sim: PlatformSimulator, redis_server: PrivateRedis
    ) -> None:
        """Redis is killed and restarted empty while deliveries are planned and being sent, and more are
        requested right after: still no violation, each delivered once. The planner saw the loss (held a
        window) and the of-sender rebuilt its send log from PostgreSQL."""
        ids = [await router.request(f"restart-{i % 3}", f"fan-{i // 3 % 2}") for i in range(15)]
        await asyncio.sleep(WINDOW_S + 1.5)  # the hold of a fresh prefix is over, sends are under way
        await redis_server.restart()
        ids += [await router.request(f"restart-{i % 3}", f"fan-{i // 3 % 2}") for i in range(15)]
        await router.finished(ids, timeout=45)
        assert all_violations(delivered_to(sim, "restart-"), LIMIT, WINDOW_S, GAP_S) == []
        assert_each_delivered_once(sim, router, ids, "restart-")
        logs = stack.logs(tail=100_000)
        assert "rate_limiter.state_lost" in logs and "send_log.loaded" in logs

    async def test_a_sender_killed_mid_request_delivers_once(
        self, stack: Stack, router: FakeRouter, sim: PlatformSimulator
    ) -> None:
        """The platform took the message but the of-sender died before the answer (SIGKILL, so the approval
        was never acknowledged): the redelivered approval finds the delivery `sending`, looks it up on the
        platform instead of sending it again, and completes with the first arrival's id — one message."""
        sim.add_fault(PlatformFaultKind.RESET_AFTER_RECEIVE, latency_s=30, account_id="kill-0")
        [delivery_id] = [await router.request("kill-0", "fan-0")]
        deadline = time.monotonic() + 20
        while not delivered_to(sim, "kill-"):
            assert time.monotonic() < deadline, "the platform never received the message"
            await asyncio.sleep(0.05)
        senders = [f"of-sender-{i}" for i in range(OF_SENDERS)]
        await asyncio.gather(*(stack.kill(name) for name in senders))
        await asyncio.gather(*(stack.restart(name) for name in senders))
        await router.finished([delivery_id], timeout=30)
        arrivals = [a for a in sim.arrivals() if a.account_id == "kill-0"]
        assert [a.outcome for a in arrivals] == ["sent"], stack.logs()
        assert [x.outcome for x in sim.lookups() if x.account_id == "kill-0"] == ["found"]
        assert arrivals[0].idempotency_key == str(delivery_id)
        assert router.completed[delivery_id].platform_message_id == arrivals[0].message_id
