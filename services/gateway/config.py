"""The gateway's settings, from environment variables (on top of the settings every service shares).

Bearer tokens are HS256 with GATEWAY_JWT_SECRET (development, `make run`) and/or RS256/ES256 of an identity
provider, verified against the keys at GATEWAY_JWKS_URL. Neither has a default: a gateway with neither
refuses to start, so a deployment can never run with a guessable key. The embedded mode (`make run`) sets a
development secret, fresh per run, and prints a token signed with it.

The feature flags' defaults and refresh (HYBRID_ORCHESTRATOR_ENABLED, FLAGS_*) come from libs.flags.FlagSettings.
"""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator

from libs.flags import FlagSettings
from services.gateway import constants as c


class GatewaySettings(FlagSettings):
    gateway_host: str = Field(default=c.DEFAULT_HOST, description="interface the HTTP API listens on")
    gateway_port: int = Field(default=c.DEFAULT_PORT, ge=0, le=65535, description="0: any free port")
    gateway_jwt_secret: SecretStr | None = Field(
        default=None, description="HS256 key of the bearer tokens; required (at least 32 bytes)"
    )
    gateway_jwks_url: str | None = Field(
        default=None, description="the identity provider's JWKS: RS256/ES256 tokens are verified with its keys"
    )
    gateway_jwks_refresh_s: float = Field(
        default=c.DEFAULT_JWKS_REFRESH_S, gt=0, description="the key set is read again this often"
    )
    gateway_jwks_min_refresh_s: float = Field(
        default=c.DEFAULT_JWKS_MIN_REFRESH_S, ge=0, description="an unknown kid re-reads the set at most this often"
    )
    gateway_jwt_issuer: str | None = Field(default=None, description="set: tokens must carry this `iss`")
    gateway_jwt_audience: str | None = Field(default=None, description="set: tokens must carry this `aud`")
    gateway_jwt_max_lifetime_s: float = Field(
        default=c.DEFAULT_MAX_TOKEN_LIFETIME_S, gt=0, description="tokens must carry iat, and exp - iat at most this"
    )
    gateway_rate_limit_rps: float = Field(
        default=c.DEFAULT_RATE_LIMIT_RPS, ge=0, description="requests per second per user (0: no limit)"
    )
    gateway_rate_limit_burst: int = Field(
        default=c.DEFAULT_RATE_LIMIT_BURST, ge=1, description="requests a user may send at once after a pause"
    )
    gateway_wait_timeout_s: float = Field(
        default=c.DEFAULT_WAIT_TIMEOUT_S, gt=0, description="longest ?wait=true; &timeout= is capped by it"
    )
    gateway_request_timeout_s: float = Field(
        default=c.DEFAULT_REQUEST_TIMEOUT_S, gt=0, description="how long one bus request waits for its reply"
    )
    gateway_body_timeout_s: float = Field(
        default=c.DEFAULT_BODY_TIMEOUT_S, gt=0, description="a request body must be in whole within this (408)"
    )
    gateway_header_timeout_s: float = Field(
        default=c.DEFAULT_HEADER_TIMEOUT_S,
        gt=0,
        description="a request's head must be in within this; also the idle keep-alive (keep a balancer's shorter)",
    )
    gateway_max_body_bytes: int = Field(
        default=c.DEFAULT_MAX_BODY_BYTES, ge=1024, description="larger request bodies answer 413"
    )
    gateway_campaign_max_body_bytes: int = Field(
        default=c.DEFAULT_CAMPAIGN_MAX_BODY_BYTES, ge=1024, description="a campaign's body (it lists its fans)"
    )
    campaign_max_recipients: int = Field(
        default=c.DEFAULT_CAMPAIGN_MAX_RECIPIENTS, ge=1, le=100_000, description="fans per campaign"
    )
    # Read by the router's webhook sender too: the embedded mode allows http callbacks to localhost.
    webhook_allow_local_http: bool = Field(default=False, description="callbackUrl may be http://localhost")
    gateway_console_trace_url: str = Field(
        default="",
        description="the console's link to a trace: an http(s) URL with {traceId}, e.g. Jaeger's "
        "http://jaeger:16686/trace/{traceId} (empty: the trace id without a link)",
    )
    gateway_health_urls: str = Field(
        default="", description='readiness URLs aggregated by the health endpoint: "name=http://h:p/readyz,..."'
    )

    @field_validator("gateway_jwt_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().encode()) < c.MIN_JWT_SECRET_BYTES:
            raise ValueError(f"GATEWAY_JWT_SECRET must be at least {c.MIN_JWT_SECRET_BYTES} bytes")
        return value

    @field_validator("gateway_jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("GATEWAY_JWKS_URL must be an http(s) URL")
        return value

    @field_validator("gateway_console_trace_url")
    @classmethod
    def _trace_template(cls, value: str) -> str:
        if value and (not value.startswith(("https://", "http://")) or "{traceId}" not in value):
            raise ValueError("GATEWAY_CONSOLE_TRACE_URL must be an http(s) URL with {traceId} in it")
        return value

    @field_validator("gateway_health_urls")
    @classmethod
    def _parsable(cls, value: str) -> str:
        parse_health_urls(value)
        return value

    def health_urls(self) -> dict[str, str]:
        """GATEWAY_HEALTH_URLS as {name: url}."""
        return parse_health_urls(self.gateway_health_urls)


def parse_health_urls(spec: str) -> dict[str, str]:
    """ "router=http://router:8081/readyz, azure-worker=http://…" → {name: url}; raises ValueError."""
    urls: dict[str, str] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, url = (s.strip() for s in item.partition("="))
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise ValueError(f"GATEWAY_HEALTH_URLS: expected name=http(s)://host:port/path, got {item!r}")
        if name in urls:
            raise ValueError(f"GATEWAY_HEALTH_URLS: {name!r} given twice")
        urls[name] = url
    return urls
