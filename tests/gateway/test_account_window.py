"""An account's sending window through the gateway: the rate-limiter on the same memory bus reads the slot
plan a real Redis holds, and the answer counts the reservations made there; who may read it, which ids it
takes, and a Redis it cannot read."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

import pytest

from libs.bus.memory import MemoryBus
from libs.ratelimit import RedisPlanner, Reservation
from libs.ratelimit.constants import epoch_key, hold_key
from libs.ratelimit.planner import redis_client
from libs.runtime import Runtime, Service
from services.gateway import make_token
from services.gateway.constants import PATH_ACCOUNT_WINDOW
from services.rate_limiter.config import RateLimiterSettings
from services.rate_limiter.service import create
from tests.gateway.conftest import ALICE, SECRET, Answer, Harness, MakeGateway

ACCOUNT = "creator-1"
LIMIT, WINDOW_S, HOURLY = 3, 60.0, 10
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"

Start = Callable[..., Awaitable[Harness]]


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def start(make_gateway: MakeGateway, redis_url: str, prefix: str) -> AsyncIterator[Start]:
    """A gateway and a rate-limiter (LIMIT per WINDOW_S, HOURLY an hour, no margin) on one memory bus."""
    services: list[tuple[Service, Runtime]] = []

    async def begin(redis: str = redis_url) -> Harness:
        bus = MemoryBus()
        settings = RateLimiterSettings(
            redis_url=redis,
            rate_limiter_key_prefix=prefix,
            of_account_limit=LIMIT,
            of_account_window_s=WINDOW_S,
            of_account_hourly_limit=HOURLY,
            of_safety_margin_s=0.0,
        )
        runtime = Runtime(bus=bus, settings=settings)
        service = await create(runtime)
        await service.start(runtime)
        services.append((service, runtime))
        return await make_gateway(bus=bus)

    yield begin
    for service, _ in services:
        await service.stop()
    client = redis_client(redis_url)
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def reserve(redis_url: str, prefix: str, count: int, account: str = ACCOUNT) -> list[Reservation]:
    """`count` deliveries of `account`, each to a fan of its own, planned as the rate-limiter plans them, by a
    plan past its first window (the first reservation on a fresh plan holds everything for a window)."""
    limits = RateLimiterSettings(
        of_account_limit=LIMIT, of_account_window_s=WINDOW_S, of_account_hourly_limit=HOURLY, of_safety_margin_s=0.0
    ).limits()
    client = redis_client(redis_url)
    planner = RedisPlanner(client, limits, prefix=prefix)
    try:
        if not await client.exists(epoch_key(prefix)):
            await planner.reserve("warm-up", "fan", "warm-up")
            await client.delete(hold_key(prefix))
        return [await planner.reserve(account, f"fan-{uuid.uuid4()}", str(uuid.uuid4())) for _ in range(count)]
    finally:
        await planner.close()


async def window(gw: Harness, account: str, **kwargs: Any) -> Answer:
    kwargs.setdefault("user", "root")
    kwargs.setdefault("role", "admin")
    path = PATH_ACCOUNT_WINDOW.replace("{accountId}", quote(account, safe=""))
    answer = await gw.client.call("GET", path, documented=False, **kwargs)
    gw.client.check_documented("GET", PATH_ACCOUNT_WINDOW, answer)
    return answer


def ms(value: str) -> int:
    return round(datetime.fromisoformat(value).timestamp() * 1000)


class TestAccountWindow:
    async def test_the_window_counts_the_reservations_and_names_the_next_free_slot(
        self, start: Start, redis_url: str, prefix: str
    ) -> None:
        """Four sends reserved at a limit of 3 a minute: 3 in the window, 1 planned a minute on, 3 of the
        hour's 10, and the next free slot is a minute after the second (no 4 sends within a minute)."""
        gw = await start()
        reservations = await reserve(redis_url, prefix, 4)
        assert [r.reason for r in reservations[:3]] == ["none", "none", "none"]
        answer = await window(gw, ACCOUNT)
        assert answer.status == 200, answer.body
        data = answer.body["data"]
        assert data["limits"] == {"accountLimit": LIMIT, "windowS": WINDOW_S, "hourlyLimit": HOURLY, "hourS": 3600.0}
        assert (data["accountId"], data["inWindow"], data["inHour"], data["plannedAhead"]) == (ACCOUNT, 3, 3, 1)
        # The fourth is a minute after the first; a fifth must be a minute after the second (the same
        # millisecond, or the next one when the reservations straddled one).
        assert reservations[3].slot_ms == reservations[0].slot_ms + round(WINDOW_S * 1000)
        assert ms(data["nextFreeAt"]) == reservations[1].slot_ms + round(WINDOW_S * 1000)
        assert ms(data["at"]) >= reservations[3].now_ms

    async def test_reading_reserves_nothing(self, start: Start, redis_url: str, prefix: str) -> None:
        """Two reads of a window with one free send left: the same counts, and the next reservation still
        gets the free send at once."""
        gw = await start()
        await reserve(redis_url, prefix, LIMIT - 1)
        first, second = (await window(gw, ACCOUNT)).body["data"], (await window(gw, ACCOUNT)).body["data"]
        assert (first["inWindow"], second["inWindow"]) == (LIMIT - 1, LIMIT - 1)
        assert ms(first["nextFreeAt"]) == ms(first["at"])
        (last,) = await reserve(redis_url, prefix, 1)
        assert last.reason == "none" and last.slot_ms == last.now_ms

    async def test_an_account_with_nothing_planned_is_free_now(self, start: Start, redis_url: str, prefix: str) -> None:
        """Another account's reservations do not count: none in use, the next free slot is now."""
        gw = await start()
        await reserve(redis_url, prefix, 4)
        data = (await window(gw, "creator-2")).body["data"]
        assert (data["inWindow"], data["inHour"], data["plannedAhead"]) == (0, 0, 0)
        assert data["nextFreeAt"] == data["at"]

    async def test_a_user_may_read_the_accounts_they_send_from(self, start: Start) -> None:
        """Their own id and an account their token names: 200; another account 403; no token 401."""
        gw = await start()
        token = make_token(SECRET, ALICE, accounts=[ACCOUNT])
        assert (await window(gw, ACCOUNT, token=token)).status == 200
        assert (await window(gw, ALICE, user=ALICE, role=None)).status == 200
        refused = await window(gw, "creator-2", token=token)
        assert (refused.status, refused.body["error"]["code"]) == (403, "forbidden")
        assert (await window(gw, ACCOUNT, user=None, role=None)).status == 401

    @pytest.mark.parametrize("account", ["...", "a b", "acct/x", "é", "x" * 129])
    async def test_an_id_outside_the_platform_pattern_is_400(self, start: Start, account: str) -> None:
        """Only dots, a space, a slash, a non-ASCII letter, or too long: 400 invalid_parameter."""
        gw = await start()
        answer = await window(gw, account)
        assert (answer.status, answer.body["error"]["code"]) == (400, "invalid_parameter")

    async def test_a_redis_the_limiter_cannot_read_is_503(self, start: Start) -> None:
        """The rate-limiter's Redis unreachable: 503 unavailable with Retry-After, saying what is down."""
        gw = await start(UNREACHABLE_REDIS)
        answer = await window(gw, ACCOUNT)
        assert (answer.status, answer.body["error"]["code"]) == (503, "unavailable")
        assert "Redis" in answer.body["error"]["message"] and answer.headers["Retry-After"] == "1"
