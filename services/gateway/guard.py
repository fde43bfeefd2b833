"""What every authenticated route passes before its handler runs: the token, then the user's request limit.

The limit is a token bucket per user id (libs.ratelimit): GATEWAY_RATE_LIMIT_RPS tokens a second, at most
GATEWAY_RATE_LIMIT_BURST saved up, one taken by every authenticated request whatever it asks (a campaign's
LLM calls are bounded by the cost-tracker's budgets instead: COST_DEFAULT_USER_DAILY_BUDGET_USD). With
REDIS_URL the buckets are in Redis, shared by every replica; a Redis that fails falls back to a bucket in
this replica (each replica then limits on its own) rather than refusing every request or none.

The token is judged first, so an anonymous or forged request is a 401 and never spends anybody's tokens; the
handler reads the same token again from the verifier's cache. The caller's user id is then on the request's
span (`user.id`) and in every log line the handler writes (`user_id`).
"""

from __future__ import annotations

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler
from opentelemetry import trace

from libs.ratelimit import LimiterUnavailable, MemoryTokenBucket, TokenBucket
from libs.telemetry import get_logger
from libs.telemetry.constants import ATTR_USER_ID, LOG_USER_ID
from services.gateway.auth import Principal, TokenVerifier
from services.gateway.errors import TooManyRequests
from services.gateway.jwks import KeySet
from services.gateway.tracing import USER_ID

log = get_logger(__name__)


class Guard:
    def __init__(self, verifier: TokenVerifier, bucket: TokenBucket | None) -> None:
        self._verifier = verifier
        self.bucket = bucket
        self._fallback = MemoryTokenBucket(bucket.rate) if bucket is not None else None

    @property
    def keys(self) -> KeySet | None:
        return self._verifier.keys

    def wrap(self, handler: Handler) -> Handler:
        async def guarded(request: web.Request) -> web.StreamResponse:
            principal = await self.admit(request)
            request[USER_ID] = principal.user_id  # the access log's field
            with structlog.contextvars.bound_contextvars(**{LOG_USER_ID: principal.user_id}):
                return await handler(request)

        return guarded

    async def admit(self, request: web.Request) -> Principal:
        """The caller, once their token is valid and their bucket had a token (raises Unauthorized or
        TooManyRequests)."""
        principal = await self._verifier.authenticate(request.headers.get("Authorization"))
        trace.get_current_span().set_attribute(ATTR_USER_ID, principal.user_id)
        if self.bucket is None or self._fallback is None:
            return principal
        try:
            taken = await self.bucket.take(principal.user_id)
        except LimiterUnavailable as exc:
            log.warning("gateway.rate_limit.unavailable", reason=str(exc))
            taken = await self._fallback.take(principal.user_id)
        if not taken.allowed:
            log.info("gateway.rate_limited", user_id=principal.user_id, path=request.path)
            rate = self.bucket.rate
            raise TooManyRequests(
                f"more than {rate.per_s:g} requests a second (bursts of {rate.burst}); retry after Retry-After seconds",
                taken.retry_after_s,
            )
        return principal

    async def close(self) -> None:
        if self.bucket is not None:
            await self.bucket.close()
        if self.keys is not None:
            await self.keys.close()
