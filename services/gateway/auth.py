"""Bearer-token authentication: JWTs whose `sub` is the user id and `role: admin` (or `roles` containing
"admin") marks an admin. The claim `accounts` (a list of platform account ids, as the company's identity
provider issues it) names the creator accounts the user may send from, besides their own id.

Two kinds of token are accepted, each only with its own key: HS256 signed with GATEWAY_JWT_SECRET (development,
`make run`), and RS256/ES256 signed by an identity provider, verified with the key its header's `kid` names in
GATEWAY_JWKS_URL (jwks.KeySet). Never "none", never a public key used as an HMAC secret: the algorithm the
token's header asks for only picks which of the configured kinds must verify it. Tokens must carry `sub`,
`exp` and `iat`, with exp - iat at most GATEWAY_JWT_MAX_LIFETIME_S; with GATEWAY_JWT_ISSUER / _AUDIENCE set,
that `iss` / `aud`. Verified tokens are cached until they expire (see TokenVerifier). `make_token` signs an
HS256 one — for tests and for the dev token `make run` prints.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from contracts.ids import USER_ID_MAX_LENGTH, is_user_id
from contracts.messages import Requester
from services.gateway import constants as c
from services.gateway.config import GatewaySettings
from services.gateway.errors import Unauthorized
from services.gateway.jwks import KeySet


@dataclass(frozen=True)
class Principal:
    """Who is calling."""

    user_id: str
    is_admin: bool = False
    accounts: tuple[str, ...] = ()  # the token's `accounts` claim

    def may_see(self, owner_user_id: str) -> bool:
        return self.is_admin or owner_user_id == self.user_id

    def may_send_as(self, account_id: str) -> bool:
        """Whether this caller may send from the creator account `account_id`."""
        return self.is_admin or account_id == self.user_id or account_id in self.accounts

    def requester(self) -> Requester:
        """Who asks, as the router's operator queries carry it."""
        return Requester(user_id=self.user_id, is_admin=self.is_admin, accounts=list(self.accounts))


def make_token(
    secret: str,
    sub: str,
    role: str | None = None,
    ttl_s: float = c.DEFAULT_TOKEN_TTL_S,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    accounts: Sequence[str] | None = None,
) -> str:
    """A signed HS256 token for user `sub` (with `role`, e.g. "admin", and the creator `accounts` it may send
    from), valid for `ttl_s` seconds."""
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "iat": now, "exp": now + int(ttl_s)}
    if role is not None:
        claims["role"] = role
    if accounts is not None:
        claims["accounts"] = list(accounts)
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=c.JWT_ALGORITHM)


class TokenVerifier:
    """Verifies bearer tokens, remembering the ones it verified until they expire.

    Decoding and checking an HS256 token costs ~120 µs of CPU, a sizeable share of a request, and clients
    send the same token many times. The cache is keyed by the whole token, signature included, so only a
    token this verifier accepted can hit; a hit re-checks `exp` and nothing else can have changed.

    `verify` never waits: it judges a token with the keys known now. `authenticate` first brings the key set
    up to date for the token's kid (a fetch, when the identity provider rotated its keys), then verifies.
    """

    def __init__(
        self,
        secret: str | None,
        *,
        keys: KeySet | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        max_lifetime_s: float = c.DEFAULT_MAX_TOKEN_LIFETIME_S,
        cache_size: int = c.TOKEN_CACHE_SIZE,
    ) -> None:
        if secret is None and keys is None:
            raise ValueError("a TokenVerifier needs an HS256 secret or a JWKS key set")
        self._secret = secret
        self.keys = keys
        self._issuer = issuer
        self._audience = audience
        self._max_lifetime_s = max_lifetime_s
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def from_settings(cls, settings: GatewaySettings) -> TokenVerifier:
        secret = settings.gateway_jwt_secret
        keys = None
        if settings.gateway_jwks_url:
            keys = KeySet(
                settings.gateway_jwks_url,
                refresh_s=settings.gateway_jwks_refresh_s,
                min_refresh_s=settings.gateway_jwks_min_refresh_s,
            )
        return cls(
            secret.get_secret_value() if secret is not None else None,
            keys=keys,
            issuer=settings.gateway_jwt_issuer,
            audience=settings.gateway_jwt_audience,
            max_lifetime_s=settings.gateway_jwt_max_lifetime_s,
        )

    async def authenticate(self, authorization: str | None) -> Principal:
        """`verify`, after fetching the identity provider's keys when the token names one not known yet."""
        token = _bearer(authorization)
        if self.keys is not None and token not in self._cache:
            try:
                header = jwt.get_unverified_header(token)
            except jwt.InvalidTokenError as exc:
                raise Unauthorized("invalid_token", f"the token is not valid: {exc}") from exc
            if header.get("alg") in c.JWKS_ALGORITHMS:
                await self.keys.ensure(header.get("kid"))
        return self.verify(authorization)

    def verify(self, authorization: str | None) -> Principal:
        """The caller behind an `Authorization` header value; raises Unauthorized with a precise code."""
        token = _bearer(authorization)
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

    def _key(self, token: str) -> tuple[str, Any]:
        """The algorithm and key `token` must verify with: the secret for HS256, the JWKS key its kid names
        for RS256/ES256 — each only when configured."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("invalid_token", f"the token is not valid: {exc}") from exc
        alg = header.get("alg")
        if alg == c.JWT_ALGORITHM and self._secret is not None:
            return alg, self._secret
        if alg in c.JWKS_ALGORITHMS and self.keys is not None:
            key = self.keys.get(header.get("kid"))
            if key is None or key.algorithm_name != alg:
                raise Unauthorized("invalid_token", "the token's kid names no key of the identity provider for its alg")
            return alg, key.key
        raise Unauthorized("invalid_token", f"the token's algorithm is not accepted (accepted: {self._accepted()})")

    def _accepted(self) -> str:
        algorithms = ([c.JWT_ALGORITHM] if self._secret is not None else []) + (
            sorted(c.JWKS_ALGORITHMS) if self.keys is not None else []
        )
        return ", ".join(algorithms)

    def _decode(self, token: str) -> tuple[Principal, float]:
        alg, key = self._key(token)
        required = ["sub", "exp"] + (["iss"] if self._issuer else []) + (["aud"] if self._audience else [])
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                # Without GATEWAY_JWT_AUDIENCE an identity provider's `aud` is not judged (PyJWT would refuse it).
                options={"require": required, "verify_aud": self._audience is not None},
                issuer=self._issuer,
                audience=self._audience,
                leeway=c.JWT_LEEWAY_S,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token_expired", "the token has expired") from exc
        except jwt.InvalidTokenError as exc:
            # PyJWT's messages name the failed check ("Signature verification failed", "Token is missing
            # the "exp" claim", "Invalid issuer") without echoing the token.
            raise Unauthorized("invalid_token", f"the token is not valid: {exc}") from exc
        self._check_lifetime(claims)
        sub = claims["sub"]
        if not is_user_id(sub):  # never "*", the global scope of budgets, nor blanks or controls
            raise Unauthorized(
                "invalid_token",
                "the token's sub must be a user id: a letter or digit, then letters, digits, _ . @ + | : -"
                f" (at most {USER_ID_MAX_LENGTH})",
            )
        roles = claims.get("roles")
        is_admin = claims.get("role") == c.ADMIN_ROLE or (isinstance(roles, list) and c.ADMIN_ROLE in roles)
        return Principal(user_id=sub, is_admin=is_admin, accounts=_accounts(claims)), float(claims["exp"])

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        """exp - iat within the maximum, and iat not in the future (else a far-future iat would stretch it)."""
        iat, exp = claims.get("iat"), claims["exp"]
        if not isinstance(iat, int | float) or isinstance(iat, bool):
            raise Unauthorized("invalid_token", "the token is not valid: it must carry iat (issued at)")
        if iat > time.time() + c.JWT_LEEWAY_S:
            raise Unauthorized("invalid_token", "the token is not valid: it was issued in the future")
        if exp - iat > self._max_lifetime_s:
            raise Unauthorized(
                "invalid_token", f"the token lives longer than GATEWAY_JWT_MAX_LIFETIME_S ({self._max_lifetime_s:g} s)"
            )


def _bearer(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer <JWT>` header value."""
    if not authorization or not authorization.strip():
        raise Unauthorized("missing_token", "send an Authorization: Bearer <JWT> header")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("invalid_token", "the Authorization header must be 'Bearer <JWT>'")
    return token


_PLATFORM_ID = re.compile(c.PLATFORM_ID_PATTERN)


def _accounts(claims: dict[str, Any]) -> tuple[str, ...]:
    """The `accounts` claim's account ids; absent, or not a list, grants none. An entry that is not a platform
    id is dropped (it could never name an account a message is sent from), as are entries beyond the cap."""
    listed = claims.get("accounts")
    if not isinstance(listed, list):
        return ()
    valid = (a for a in listed if isinstance(a, str) and len(a) <= c.MAX_ID_LENGTH and _PLATFORM_ID.match(a))
    return tuple(dict.fromkeys(valid))[: c.MAX_TOKEN_ACCOUNTS]
