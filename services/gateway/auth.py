"""Bearer-token authentication: HS256 JWTs whose `sub` is the user id and `role: admin` marks an admin.

Tokens must carry `sub` and `exp`; only HS256 is accepted (never "none", never whatever the token's
header asks for). Verified tokens are cached until they expire (see TokenVerifier). `make_token` signs
one — for tests and for the dev token `make run` prints.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import jwt

from services.gateway import constants as c
from services.gateway.errors import Unauthorized


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    user_id: str
    is_admin: bool = False

    def may_see(self, owner_user_id: str) -> bool:
        return self.is_admin or owner_user_id == self.user_id


def make_token(secret: str, sub: str, role: str | None = None, ttl_s: float = c.DEFAULT_TOKEN_TTL_S) -> str:
    """A signed HS256 token for user `sub` (with `role`, e.g. "admin"), valid for `ttl_s` seconds."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl_s)}
    if role is not None:
        claims["role"] = role
    return jwt.encode(claims, secret, algorithm=c.JWT_ALGORITHM)


class TokenVerifier:
    """Verifies bearer tokens, remembering the ones it verified until they expire.

    Decoding and checking an HS256 token costs ~120 µs of CPU, a sizeable share of a request, and clients
    send the same token many times. The cache is keyed by the whole token, signature included, so only a
    token this verifier accepted can hit; a hit re-checks `exp` and nothing else can have changed.
    """

    def __init__(self, secret: str, *, cache_size: int = c.TOKEN_CACHE_SIZE) -> None:
        self._secret = secret
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    def verify(self, authorization: str | None) -> Principal:
        """The caller behind an `Authorization` header value; raises Unauthorized with a precise code."""
        if not authorization or not authorization.strip():
            raise Unauthorized("missing_token", "send an Authorization: Bearer <JWT> header")
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("invalid_token", "the Authorization header must be 'Bearer <JWT>'")
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires_at = cached
            if time.time() > expires_at + c.JWT_LEEWAY_S:
                del self._cache[token]
                raise Unauthorized("token_expired", "the token has expired")
            self._cache.move_to_end(token)
            return principal
        principal, expires_at = self._decode(token)
        self._cache[token] = (principal, expires_at)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[c.JWT_ALGORITHM],
                options={"require": ["sub", "exp"]},
                leeway=c.JWT_LEEWAY_S,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token_expired", "the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the failed check ("Signature verification failed", "Token is missing
            # the "exp" claim") without echoing the token.
            raise Unauthorized("invalid_token", f"the token is not valid: {exc}") from exc
        sub = claims["sub"]
        if not isinstance(sub, str) or not sub.strip() or len(sub) > c.MAX_ID_LENGTH:
            raise Unauthorized("invalid_token", "the token's sub must be a user id")
        return Principal(user_id=sub, is_admin=claims.get("role") == c.ADMIN_ROLE), float(claims["exp"])
