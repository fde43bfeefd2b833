"""The identity provider's signing keys (GATEWAY_JWKS_URL), fetched without blocking the event loop.

PyJWT's PyJWKClient fetches with urllib, synchronously; here aiohttp fetches the JSON and PyJWT's PyJWKSet
builds the keys. The set is read at start, again every GATEWAY_JWKS_REFRESH_S (a retired key stops being
accepted), and when a token names a kid the set lacks (the provider rotated its keys) — at most once per
GATEWAY_JWKS_MIN_REFRESH_S, and one fetch at a time however many requests wait for it. A failed fetch keeps
the keys already known.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import aiohttp
import jwt
import orjson

from libs.telemetry import get_logger
from services.gateway import constants as c

log = get_logger(__name__)


class KeySetUnavailable(Exception):
    """The key set could not be fetched or holds no usable key."""


class KeySet:
    def __init__(
        self,
        url: str,
        *,
        refresh_s: float = c.DEFAULT_JWKS_REFRESH_S,
        min_refresh_s: float = c.DEFAULT_JWKS_MIN_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._refresh_s = refresh_s
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None
        self.fetches = 0

    def get(self, kid: object) -> jwt.PyJWK | None:
        """The key named `kid`, if the set has it (and it is for one of JWKS_ALGORITHMS)."""
        return self._keys.get(kid) if isinstance(kid, str) else None

    async def ensure(self, kid: object) -> None:
        """Make the set current enough to judge a token naming `kid`: re-read it when stale, or when it lacks
        `kid` and was not read in the last min_refresh_s."""
        if not self._due(kid):
            return
        async with self._lock:
            if self._due(kid):  # another request may have refreshed it while this one waited
                try:
                    await self.refresh()
                except KeySetUnavailable as exc:
                    log.warning("gateway.jwks.refresh_failed", url=self.url, reason=str(exc))

    def _due(self, kid: object) -> bool:
        if self._fetched_at is None:
            return True
        age = self._clock() - self._fetched_at
        return age >= self._refresh_s or (self.get(kid) is None and age >= self._min_refresh_s)

    async def refresh(self) -> None:
        """Fetch the set now (raises KeySetUnavailable, keeping the keys known so far)."""
        self._fetched_at = self._clock()  # a failure counts too: the next try waits min_refresh_s
        self.fetches += 1
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=c.JWKS_FETCH_TIMEOUT_S))
        try:
            async with self._session.get(self.url) as response:
                response.raise_for_status()
                raw = await response.content.read(c.JWKS_MAX_BYTES + 1)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KeySetUnavailable(f"fetching the key set failed: {type(exc).__name__}: {exc}") from exc
        if len(raw) > c.JWKS_MAX_BYTES:
            raise KeySetUnavailable(f"the key set is larger than {c.JWKS_MAX_BYTES} bytes")
        try:
            document = orjson.loads(raw)
            found = jwt.PyJWKSet.from_dict(document if isinstance(document, dict) else {})
        except (orjson.JSONDecodeError, jwt.PyJWTError) as exc:
            raise KeySetUnavailable(f"the key set is not a JWKS: {exc}") from exc
        keys = {k.key_id: k for k in found.keys if k.key_id and k.algorithm_name in c.JWKS_ALGORITHMS}
        if not keys:
            raise KeySetUnavailable(f"the key set has no key with a kid for {sorted(c.JWKS_ALGORITHMS)}")
        if keys.keys() != self._keys.keys():
            log.info("gateway.jwks.keys", url=self.url, kids=sorted(keys))
        self._keys = keys

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
