"""The gateway as a service: settings from the environment, start-up refusals, the bound port, tokens."""

from __future__ import annotations

import time

import jwt
import pytest
from pydantic import ValidationError

from libs.bus.memory import MemoryBus
from libs.config import CommonSettings
from libs.runtime import Runtime
from services.gateway import GatewaySettings, create, make_token
from services.gateway.auth import TokenVerifier
from services.gateway.errors import GatewayConfigError, Unauthorized
from tests.gateway.conftest import SECRET, Harness


class TestSettings:
    def test_reads_the_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Every GATEWAY_* variable and HYBRID_ORCHESTRATOR_ENABLED is read."""
        for name, value in {
            "GATEWAY_PORT": "9090",
            "GATEWAY_JWT_SECRET": SECRET,
            "HYBRID_ORCHESTRATOR_ENABLED": "false",
            "GATEWAY_WAIT_TIMEOUT_S": "12.5",
            "GATEWAY_REQUEST_TIMEOUT_S": "2",
            "GATEWAY_MAX_BODY_BYTES": "4096",
            "GATEWAY_HEALTH_URLS": "router=http://router:8081/readyz, cost-tracker=http://c:8081/readyz",
        }.items():
            monkeypatch.setenv(name, value)
        settings = GatewaySettings()
        assert settings.gateway_port == 9090 and settings.hybrid_orchestrator_enabled is False
        assert settings.gateway_jwt_secret is not None and settings.gateway_jwt_secret.get_secret_value() == SECRET
        assert (settings.gateway_wait_timeout_s, settings.gateway_request_timeout_s) == (12.5, 2.0)
        assert settings.gateway_max_body_bytes == 4096
        assert settings.health_urls() == {"router": "http://router:8081/readyz", "cost-tracker": "http://c:8081/readyz"}

    def test_defaults(self) -> None:
        """Port 8080, enabled, 60 s wait, 5 s bus requests, 64 KiB bodies."""
        settings = GatewaySettings()
        assert settings.gateway_port == 8080 and settings.hybrid_orchestrator_enabled
        assert (settings.gateway_wait_timeout_s, settings.gateway_request_timeout_s) == (60.0, 5.0)
        assert settings.gateway_max_body_bytes == 65536

    def test_short_secret_is_refused(self) -> None:
        """An HS256 key under 32 bytes is a configuration error."""
        with pytest.raises(ValidationError, match="at least 32 bytes"):
            GatewaySettings(gateway_jwt_secret="short")

    @pytest.mark.parametrize("spec", ["router", "router=", "=http://x", "router=ftp://x", "a=http://x,a=http://y"])
    def test_bad_health_urls_are_refused(self, spec: str) -> None:
        """GATEWAY_HEALTH_URLS must be name=http(s)://... pairs with distinct names."""
        with pytest.raises(ValidationError, match="GATEWAY_HEALTH_URLS"):
            GatewaySettings(gateway_health_urls=spec)


class TestService:
    async def test_refuses_to_start_without_a_secret(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """No GATEWAY_JWT_SECRET: create() raises instead of serving an API anyone could sign tokens for."""
        monkeypatch.delenv("GATEWAY_JWT_SECRET", raising=False)
        with pytest.raises(GatewayConfigError, match="GATEWAY_JWT_SECRET"):
            await create(Runtime(bus=MemoryBus(), settings=CommonSettings()))

    async def test_port_zero_binds_a_free_port_and_publishes_the_url(self, gw: Harness) -> None:
        """GATEWAY_PORT=0: the bound port is in runtime.shared.gateway_url and the service is ready."""
        assert gw.url.startswith("http://127.0.0.1:") and not gw.url.endswith(":0")
        await gw.service.checks["http"]()
        assert gw.service.name == "gateway" and dict(gw.service.handlers) == {}

    async def test_stopped_gateway_is_not_ready(self, gw: Harness) -> None:
        """After stop the readiness check fails."""
        await gw.service.stop()
        with pytest.raises(RuntimeError):
            await gw.service.checks["http"]()


class TestTokens:
    def test_make_token_round_trips(self) -> None:
        """make_token signs sub, role and exp that the verifier reads back."""
        principal = TokenVerifier(SECRET).verify(f"Bearer {make_token(SECRET, 'carol', role='admin')}")
        assert (principal.user_id, principal.is_admin) == ("carol", True)
        claims = jwt.decode(make_token(SECRET, "dave", ttl_s=60), SECRET, algorithms=["HS256"])
        assert claims["sub"] == "dave" and claims["exp"] - claims["iat"] == 60 and "role" not in claims

    def test_a_cached_token_still_expires(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A token verified once (and cached) is refused as expired once its exp (plus leeway) has passed."""
        verifier = TokenVerifier(SECRET)
        header = f"Bearer {make_token(SECRET, 'frank', ttl_s=60)}"
        assert verifier.verify(header).user_id == "frank"
        later = time.time() + 60 + 11
        monkeypatch.setattr(time, "time", lambda: later)
        with pytest.raises(Unauthorized) as refused:
            verifier.verify(header)
        assert refused.value.code == "token_expired"

    def test_a_tampered_copy_of_a_cached_token_is_refused(self) -> None:
        """The cache is keyed by the whole token: changing its signature is a miss, and a bad token."""
        verifier = TokenVerifier(SECRET)
        token = make_token(SECRET, "grace")
        verifier.verify(f"Bearer {token}")
        tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
        with pytest.raises(Unauthorized) as refused:
            verifier.verify(f"Bearer {tampered}")
        assert refused.value.code == "invalid_token"

    def test_the_cache_is_bounded(self) -> None:
        """Past its size the least recently used token is forgotten (and simply verified again)."""
        verifier = TokenVerifier(SECRET, cache_size=2)
        for user in ("u1", "u2", "u3", "u1"):
            assert verifier.verify(f"Bearer {make_token(SECRET, user)}").user_id == user
        assert len(verifier._cache) == 2

    def test_lowercase_scheme_is_accepted(self) -> None:
        """The auth scheme is case-insensitive (RFC 7235)."""
        assert TokenVerifier(SECRET).verify(f"bearer {make_token(SECRET, 'erin')}").user_id == "erin"
