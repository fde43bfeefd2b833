"""The hourly cap beyond the planner: its setting, the of-sender's last check, and the platform simulator
refusing a send over the hour (the referee that makes a violation fail a test)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
import redis.asyncio as aioredis

from libs.ratelimit import DeliveryLimitSettings, Limits, MemorySendLog, RedisSendLog, SendLog, SentRecord
from libs.simulators import PlatformLimits, PlatformSimulator
from tests.delivery.compliance import window_violations

# 3 per "minute" of 1 s, 4 per "hour" of 5 s.
LIMITS = Limits(account_limit=3, window_ms=1000, recipient_gap_ms=0, hourly_limit=4, hour_ms=5000)
KINDS = [pytest.param("memory"), pytest.param("redis", marks=pytest.mark.integration)]


class TestSetting:
    def test_unset_means_no_hourly_cap(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without OF_ACCOUNT_HOURLY_LIMIT only the window counts, and nothing is kept an hour."""
        monkeypatch.delenv("OF_ACCOUNT_HOURLY_LIMIT", raising=False)
        limits = DeliveryLimitSettings(of_account_window_s=60, of_safety_margin_s=1).limits()
        assert limits.hourly_limit == 0 and limits.account_windows == ((10, 61_000),)
        assert limits.horizon_ms == 61_000

    def test_the_cap_is_read_from_the_environment_with_the_margin_on_the_hour(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OF_ACCOUNT_HOURLY_LIMIT caps every rolling hour (plus OF_SAFETY_MARGIN_S), and the of-sender then
        reloads an hour of sends after a loss (the horizon)."""
        monkeypatch.setenv("OF_ACCOUNT_HOURLY_LIMIT", "200")
        limits = DeliveryLimitSettings(of_account_window_s=60, of_safety_margin_s=1).limits()
        assert limits.account_windows == ((10, 61_000), (200, 3_601_000))
        assert limits.horizon_ms == 3_601_000

    def test_bypass_takes_the_same_share_of_the_hourly_cap(self) -> None:
        """bypass_with_warning's replica limit is the bypass's share of the cap, never 0 (no cap)."""
        settings = DeliveryLimitSettings(of_account_limit=10, rate_limiter_bypass_account_limit=2)
        assert settings.model_copy(update={"of_account_hourly_limit": 100}).bypass_limits().hourly_limit == 20
        assert settings.model_copy(update={"of_account_hourly_limit": 3}).bypass_limits().hourly_limit == 1
        assert settings.bypass_limits().hourly_limit == 0


@pytest.fixture(params=KINDS)
def send_log(request: pytest.FixtureRequest) -> SendLog:
    if request.param == "memory":
        return MemorySendLog(LIMITS)
    client: aioredis.Redis = request.getfixturevalue("redis_client")
    return RedisSendLog(client, LIMITS, prefix=request.getfixturevalue("prefix"))


class TestLastCheck:
    async def test_sends_of_the_past_hour_count(self, send_log: SendLog) -> None:
        """With three sends in the hour (none in the window) one more passes; the next waits until the
        oldest of the four is an hour old, though the window has room."""
        probe = await send_log.check("a", "x", "probe")  # only to read the log's clock
        now = probe.now_ms
        history = [SentRecord(f"h{i}", f"fan{i}", now - ago) for i, ago in enumerate((4000, 3000, 2500))]
        await send_log.load("a", history)
        assert (await send_log.check("a", "fan8", "t1")).allowed
        refused = await send_log.check("a", "fan9", "t2")
        assert not refused.allowed and refused.retry_at_ms == now - 4000 + LIMITS.hour_ms

    async def test_the_window_still_applies_under_the_cap(self, send_log: SendLog) -> None:
        """Three sends fill the window: the fourth (within the hourly cap) waits for the window."""
        await send_log.load("a", [])
        checks = [await send_log.check("a", f"fan{i}", f"t{i}") for i in range(3)]
        refused = await send_log.check("a", "fan9", "t9")
        assert not refused.allowed and refused.retry_at_ms == checks[0].now_ms + LIMITS.window_ms


@pytest.fixture
async def platform() -> AsyncIterator[PlatformSimulator]:
    limits = PlatformLimits(account_limit=3, window_s=0.2, recipient_min_interval_s=0, hourly_limit=4, hour_s=1.0)
    async with PlatformSimulator(limits) as simulator:
        yield simulator


async def post(http: aiohttp.ClientSession, platform: PlatformSimulator, fan: str) -> tuple[int, float]:
    """Send one message on account `acct`: the status and the Retry-After (0 when absent)."""
    url = f"{platform.url}/accounts/acct/chats/{fan}/messages"
    async with http.post(url, json={"text": "hi"}, headers={"Authorization": "Bearer t"}) as response:
        return response.status, float(response.headers.get("Retry-After", 0))


class TestSimulatorHourlyLimit:
    async def test_a_send_over_the_hour_is_refused(self, platform: PlatformSimulator) -> None:
        """Three pass, the window refuses the fourth; after the window the fourth passes and the hour
        refuses the fifth with a Retry-After until the first is an hour old; then it passes."""
        async with aiohttp.ClientSession() as http:
            assert [(await post(http, platform, f"fan{i}"))[0] for i in range(3)] == [200, 200, 200]
            assert (await post(http, platform, "fan3"))[0] == 429
            await asyncio.sleep(0.25)
            assert (await post(http, platform, "fan4"))[0] == 200
            status, retry_after = await post(http, platform, "fan5")
            assert status == 429 and 0.5 < retry_after <= 0.75
            await asyncio.sleep(retry_after + 0.01)
            assert (await post(http, platform, "fan6"))[0] == 200
        sent = [a.at for a in platform.delivered()]
        assert len(sent) == 5 and window_violations(sent, 4, 1.0) == []
