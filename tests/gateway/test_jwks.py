"""Tokens of an identity provider: RS256/ES256 verified with the keys of a local JWKS server (aiohttp),
key rotation, issuer, audience and lifetime checks, and HS256 only where a secret is configured."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from libs.bus.memory import MemoryBus
from libs.config import CommonSettings
from libs.runtime import Runtime
from services.gateway import GatewaySettings, create, make_token
from services.gateway.errors import GatewayConfigError
from tests.gateway.conftest import SECRET, Harness, MakeGateway

ISSUER, AUDIENCE = "https://id.example.test/", "hybrid-orchestrator"


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    def jwk(self) -> dict[str, Any]:
        algorithm = jwt.get_algorithm_by_name(self.alg)
        public = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def token(self, sub: str = "idp-user", *, ttl_s: int = 300, **claims: Any) -> str:
        now = int(time.time())
        body = {"sub": sub, "iat": now, "exp": now + ttl_s, "iss": ISSUER, "aud": AUDIENCE, **claims}
        body = {name: value for name, value in body.items() if value is not None}  # None: leave the claim out
        return jwt.encode(body, self.private, algorithm=self.alg, headers={"kid": self.kid})


def rsa_key(kid: str) -> SigningKey:
    return SigningKey(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))


def ec_key(kid: str) -> SigningKey:
    return SigningKey(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))


@dataclass
class JwksServer:
    """A local identity provider's /jwks.json: serves `keys`, counts the fetches."""

    keys: list[SigningKey] = field(default_factory=list)
    fetches: int = 0
    url: str = ""

    async def handle(self, _: web.Request) -> web.Response:
        self.fetches += 1
        return web.json_response({"keys": [k.jwk() for k in self.keys]})


@pytest.fixture
async def idp() -> AsyncIterator[JwksServer]:
    server = JwksServer(keys=[rsa_key("rsa-1"), ec_key("ec-1")])
    app = web.Application()
    app.router.add_get("/jwks.json", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/jwks.json"
    yield server
    await runner.cleanup()


async def idp_gateway(make_gateway: MakeGateway, idp: JwksServer, **overrides: Any) -> Harness:
    settings: dict[str, Any] = {
        "gateway_jwt_secret": None,
        "gateway_jwks_url": idp.url,
        "gateway_jwt_issuer": ISSUER,
        "gateway_jwt_audience": AUDIENCE,
        "gateway_jwks_min_refresh_s": 0,
        **overrides,
    }
    return await make_gateway(**settings)


async def status_of(gw: Harness, token: str) -> tuple[int, str | None]:
    """(HTTP status, error code) of a status read with `token`: 404 means the token was accepted."""
    answer = await gw.client.status(uuid.uuid4(), token=token)
    return answer.status, answer.body["error"]["code"]


class TestIdentityProviderTokens:
    async def test_rs256_and_es256_tokens_are_accepted(self, make_gateway: MakeGateway, idp: JwksServer) -> None:
        """Tokens signed with the JWKS's RSA and EC keys authenticate (the keys fetched once, at start)."""
        gw = await idp_gateway(make_gateway, idp)
        for key in idp.keys:
            assert await status_of(gw, key.token()) == (404, "not_found")
        assert idp.fetches == 1

    async def test_admin_role_from_roles_list(self, make_gateway: MakeGateway, idp: JwksServer) -> None:
        """An identity provider's `roles: ["admin"]` makes an admin (the flags admin endpoint answers 200)."""
        gw = await idp_gateway(make_gateway, idp)
        user = await gw.client.call("GET", "/api/admin/feature-flags", token=idp.keys[0].token(roles=["viewer"]))
        admin = await gw.client.call("GET", "/api/admin/feature-flags", token=idp.keys[0].token(roles=["admin"]))
        assert (user.status, admin.status) == (403, 200)

    async def test_a_rotated_key_is_fetched_on_its_kid(self, make_gateway: MakeGateway, idp: JwksServer) -> None:
        """The provider rotates to a new key: its first token makes the gateway re-read the set and pass;
        a key the set no longer has is refused once the set is re-read."""
        gw = await idp_gateway(make_gateway, idp)
        old, new = idp.keys[0], rsa_key("rsa-2")
        idp.keys = [new]
        assert await status_of(gw, new.token()) == (404, "not_found")
        assert idp.fetches == 2
        assert await status_of(gw, old.token(sub="someone-else")) == (401, "invalid_token")

    async def test_unknown_kids_refetch_at_most_once_per_interval(
        self, make_gateway: MakeGateway, idp: JwksServer
    ) -> None:
        """Tokens with made-up kids are 401 and re-read the set at most once per GATEWAY_JWKS_MIN_REFRESH_S."""
        gw = await idp_gateway(make_gateway, idp, gateway_jwks_min_refresh_s=60)
        for n in range(3):
            forged = rsa_key(f"made-up-{n}")
            assert await status_of(gw, forged.token()) == (401, "invalid_token")
        assert idp.fetches == 1

    @pytest.mark.parametrize(
        ("claims", "ttl_s"),
        [
            ({"iss": "https://evil.example.test/"}, 300),
            ({"aud": "another-api"}, 300),
            ({"iss": None}, 300),
            ({}, 2 * 24 * 3600),
            ({"iat": int(time.time()) + 3600}, 300),
        ],
        ids=["wrong issuer", "wrong audience", "no issuer", "lifetime over the maximum", "issued in the future"],
    )
    async def test_wrong_claims_answer_401(
        self, make_gateway: MakeGateway, idp: JwksServer, claims: dict[str, Any], ttl_s: int
    ) -> None:
        """A token of the right key with the wrong iss or aud, none, or a too-long lifetime is 401 invalid_token."""
        gw = await idp_gateway(make_gateway, idp, gateway_jwt_max_lifetime_s=3600)
        token = idp.keys[0].token(ttl_s=ttl_s, **claims)
        assert await status_of(gw, token) == (401, "invalid_token")

    async def test_a_key_of_one_algorithm_never_verifies_another(
        self, make_gateway: MakeGateway, idp: JwksServer
    ) -> None:
        """An HS256 token (e.g. signed with the RSA public key as its secret) is refused without a secret;
        an ES256 header naming the RSA key's kid is refused."""
        gw = await idp_gateway(make_gateway, idp)
        assert await status_of(gw, make_token(SECRET, "mallory")) == (401, "invalid_token")
        rsa_kid_ec_alg = SigningKey("rsa-1", "ES256", idp.keys[1].private).token()
        assert await status_of(gw, rsa_kid_ec_alg) == (401, "invalid_token")

    async def test_hs256_stays_for_development_beside_jwks(self, make_gateway: MakeGateway, idp: JwksServer) -> None:
        """With both configured, a GATEWAY_JWT_SECRET token (with the issuer and audience) and an RS256 one pass."""
        gw = await idp_gateway(make_gateway, idp, gateway_jwt_secret=SECRET)
        dev = make_token(SECRET, "dev", issuer=ISSUER, audience=AUDIENCE)
        assert await status_of(gw, dev) == (404, "not_found")
        assert await status_of(gw, idp.keys[0].token()) == (404, "not_found")

    async def test_an_unreachable_jwks_does_not_stop_the_start(self, make_gateway: MakeGateway) -> None:
        """The provider down at start: the gateway serves, its tokens are 401 until the keys can be read."""
        gw = await make_gateway(gateway_jwt_secret=None, gateway_jwks_url="http://127.0.0.1:1/jwks.json")
        assert await status_of(gw, rsa_key("rsa-1").token()) == (401, "invalid_token")


class TestConfiguration:
    async def test_refuses_to_start_with_neither_secret_nor_jwks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Neither GATEWAY_JWT_SECRET nor GATEWAY_JWKS_URL: create() raises naming both."""
        settings = GatewaySettings(gateway_jwt_secret=None, gateway_jwks_url=None)
        runtime = Runtime(bus=MemoryBus(), settings=CommonSettings())
        with pytest.raises(GatewayConfigError, match="GATEWAY_JWKS_URL"):
            await create(runtime, settings=settings)

    def test_jwks_url_must_be_http(self) -> None:
        """GATEWAY_JWKS_URL is an http(s) URL."""
        with pytest.raises(ValueError, match="GATEWAY_JWKS_URL"):
            GatewaySettings(gateway_jwks_url="file:///etc/jwks.json")
