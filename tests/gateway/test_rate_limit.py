"""The per-user request limit: token buckets in memory and on a real Redis, and gateways answering 429."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from libs.flags import MemoryFlagStore
from libs.ratelimit import LimiterUnavailable, MemoryTokenBucket, Rate, RedisTokenBucket
from libs.runtime import Shared
from services.gateway import constants as c
from services.gateway.routes import ROUTES
from tests.gateway.conftest import MakeGateway


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _user() -> str:
    return f"rl-{uuid.uuid4().hex[:12]}"  # Redis outlives a run: every test limits users of its own


class TestMemoryBucket:
    async def test_burst_then_the_rate(self) -> None:
        """A full bucket lets `burst` requests through at once, then one per 1/rate seconds."""
        clock = FakeClock()
        bucket = MemoryTokenBucket(Rate(per_s=2, burst=3), clock=clock)
        assert [(await bucket.take("u")).allowed for _ in range(4)] == [True, True, True, False]
        refused = await bucket.take("u")
        assert not refused.allowed and refused.retry_after_s == pytest.approx(0.5)
        clock.now += 0.5
        assert (await bucket.take("u")).allowed and not (await bucket.take("u")).allowed

    async def test_users_have_their_own_buckets(self) -> None:
        """One user's empty bucket does not limit another user."""
        bucket = MemoryTokenBucket(Rate(per_s=1, burst=1), clock=FakeClock())
        assert (await bucket.take("a")).allowed and not (await bucket.take("a")).allowed
        assert (await bucket.take("b")).allowed

    async def test_a_bucket_never_holds_more_than_the_burst(self) -> None:
        """A long pause refills up to the burst, not beyond."""
        clock = FakeClock()
        bucket = MemoryTokenBucket(Rate(per_s=10, burst=2), clock=clock)
        clock.now += 3600
        assert [(await bucket.take("u")).allowed for _ in range(3)] == [True, True, False]

    def test_a_rate_must_be_positive(self) -> None:
        """A zero rate or an empty burst is refused when the limit is built."""
        with pytest.raises(ValueError, match="positive rate"):
            Rate(per_s=0, burst=1)
        with pytest.raises(ValueError, match="burst"):
            Rate(per_s=1, burst=0)


@pytest.mark.integration
class TestRedisBucket:
    async def test_burst_then_refused_with_the_wait(self, redis_url: str) -> None:
        """On Redis: `burst` takes succeed, the next is refused with the time until a token is back."""
        bucket = RedisTokenBucket(aioredis.Redis.from_url(redis_url), Rate(per_s=1, burst=3), prefix="test:tb:")
        user = _user()
        try:
            assert [(await bucket.take(user)).allowed for _ in range(4)] == [True, True, True, False]
            refused = await bucket.take(user)
            assert 0.5 < refused.retry_after_s <= 1.0
        finally:
            await bucket.close()

    async def test_an_idle_bucket_expires(self, redis_url: str) -> None:
        """The bucket's key lives only until it would be full again (plus a second): idle users cost nothing."""
        client = aioredis.Redis.from_url(redis_url)
        bucket = RedisTokenBucket(client, Rate(per_s=100, burst=10), prefix="test:tb:")
        user = _user()
        try:
            await bucket.take(user)
            assert 0 < await client.pttl(f"test:tb:{user}") <= 1010
        finally:
            await bucket.close()

    async def test_unreachable_redis_raises_limiter_unavailable(self) -> None:
        """A Redis that cannot be reached is LimiterUnavailable, not a redis error."""
        bucket = RedisTokenBucket(aioredis.Redis.from_url("redis://127.0.0.1:1/0"), Rate(per_s=1, burst=1))
        try:
            with pytest.raises(LimiterUnavailable):
                await bucket.take("u")
        finally:
            await bucket.close()


class TestGateway:
    def test_every_authenticated_route_documents_the_429(self) -> None:
        """Each route that needs a token documents 429 too_many_requests with Retry-After; open ones do not."""
        for route in ROUTES:
            reply = route.replies.get(429)
            if route.auth:
                assert reply is not None and "too_many_requests" in reply.description, route.path
                assert reply.headers == ("Retry-After",)
            else:
                assert reply is None, route.path
        campaign = next(r for r in ROUTES if r.path == c.PATH_CAMPAIGN)
        assert "rate_limit_exceeded" in campaign.replies[429].description  # the provider's limit is kept

    async def test_over_the_burst_answers_429_with_retry_after(self, make_gateway: MakeGateway) -> None:
        """In-process bucket: the request after the burst answers 429 too_many_requests, Retry-After ≥ 1."""
        gw = await make_gateway(gateway_rate_limit_rps=0.5, gateway_rate_limit_burst=2)
        user = _user()
        for _ in range(2):
            assert (await gw.client.status(uuid.uuid4(), user=user)).status == 404
        refused = await gw.client.status(uuid.uuid4(), user=user)
        assert refused.status == 429 and refused.body["error"]["code"] == "too_many_requests"
        assert refused.headers["Retry-After"] == "2"
        assert (await gw.client.status(uuid.uuid4(), user=_user())).status == 404  # another user is not limited

    async def test_unauthenticated_requests_spend_nothing(self, make_gateway: MakeGateway) -> None:
        """A bad token is 401 before the bucket, and open routes (health) are never limited."""
        gw = await make_gateway(gateway_rate_limit_rps=0.01, gateway_rate_limit_burst=1)
        for _ in range(3):
            assert (await gw.client.status(uuid.uuid4(), token="not-a-jwt")).status == 401
            assert (await gw.client.call("GET", "/api/openapi.json", documented=False)).status == 200
        assert (await gw.client.status(uuid.uuid4())).status == 404

    async def test_zero_rate_means_no_limit(self, make_gateway: MakeGateway) -> None:
        """GATEWAY_RATE_LIMIT_RPS=0: no bucket at all."""
        gw = await make_gateway(gateway_rate_limit_rps=0, gateway_rate_limit_burst=1)
        for _ in range(5):
            assert (await gw.client.status(uuid.uuid4())).status == 404

    @pytest.mark.integration
    async def test_two_gateways_share_one_bucket_on_redis(self, make_gateway: MakeGateway, redis_url: str) -> None:
        """Two replicas with one REDIS_URL draw from one bucket per user: the burst is spent across both."""
        store = MemoryFlagStore()
        settings = {"redis_url": redis_url, "gateway_rate_limit_rps": 0.2, "gateway_rate_limit_burst": 4}
        a = await make_gateway(shared=Shared(flag_store=store), **settings)
        b = await make_gateway(shared=Shared(flag_store=store), **settings)
        user = _user()
        for gw in (a, b, a, b):
            assert (await gw.client.status(uuid.uuid4(), user=user)).status == 404
        for gw in (a, b):
            refused = await gw.client.status(uuid.uuid4(), user=user)
            assert refused.status == 429 and int(refused.headers["Retry-After"]) in (4, 5)

    async def test_a_failing_redis_falls_back_to_this_replica(self, make_gateway: MakeGateway) -> None:
        """Redis unreachable: requests are still answered, limited by the replica's own bucket."""
        gw = await make_gateway(
            shared=Shared(flag_store=MemoryFlagStore()),
            redis_url="redis://127.0.0.1:1/0",
            gateway_rate_limit_rps=0.5,
            gateway_rate_limit_burst=1,
        )
        user = _user()
        assert (await gw.client.status(uuid.uuid4(), user=user)).status == 404
        assert (await gw.client.status(uuid.uuid4(), user=user)).status == 429
