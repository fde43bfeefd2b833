"""The gateway service: the public HTTP API (aiohttp) in front of the bus. It consumes no messages.

`create(runtime)` takes the GatewaySettings handed to it (tests), else reads them from the environment; the
start hook binds the site and publishes its URL in `runtime.shared.gateway_url` (GATEWAY_PORT=0 picks a free
port). The feature flags (libs.flags) come from Redis when REDIS_URL is set, else from this process, unless
the runner shares the store of every service of the process (`runtime.shared.flag_store`).
"""

from __future__ import annotations

from functools import partial
from typing import Any, cast

from aiohttp import web
from aiohttp.typedefs import Handler

from contracts.routing import GATEWAY
from libs.config import bind_error
from libs.flags import open_flag_client
from libs.ratelimit import Rate, TokenBucket, open_token_bucket
from libs.runtime import Runtime, Service
from libs.telemetry import get_logger
from services.gateway import constants as c
from services.gateway.api import Api
from services.gateway.auth import TokenVerifier
from services.gateway.config import GatewaySettings
from services.gateway.console import add_pages
from services.gateway.control import ControlEndpoints
from services.gateway.costs import CostEndpoints
from services.gateway.dead_letters import DeadLetterEndpoints
from services.gateway.errors import GatewayConfigError, error_middleware
from services.gateway.examples import REQUEST_EXAMPLES
from services.gateway.feature_flags import FeatureFlagEndpoints
from services.gateway.guard import Guard
from services.gateway.health import HealthAggregator
from services.gateway.jwks import KeySetUnavailable
from services.gateway.listing import ListingEndpoints
from services.gateway.openapi import EndpointMethod, build_document
from services.gateway.routes import ROUTES
from services.gateway.server import GatewayRunner
from services.gateway.tracing import tracing_middleware
from services.gateway.window import WindowEndpoints

log = get_logger(__name__)

API_TITLE = "Hybrid Orchestrator API"
API_VERSION = "2.0.0"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of every route the gateway serves, with request examples."""
    return build_document(ROUTES, title=API_TITLE, version=API_VERSION, examples=REQUEST_EXAMPLES)


class Gateway:
    """The aiohttp application and its site, for one runtime."""

    def __init__(self, runtime: Runtime, settings: GatewaySettings) -> None:
        if settings.gateway_jwt_secret is None and settings.gateway_jwks_url is None:
            raise GatewayConfigError(
                "GATEWAY_JWT_SECRET (at least 32 bytes) or GATEWAY_JWKS_URL is required to verify tokens"
            )
        self.settings = settings
        self._runtime = runtime
        self._health = HealthAggregator(runtime.bus, runtime.shared, settings.health_urls())
        verifier = TokenVerifier.from_settings(settings)
        self.guard = Guard(verifier, _request_bucket(settings))
        self.costs = CostEndpoints(runtime.bus, settings, verifier)
        self.flags = open_flag_client(settings, store=runtime.shared.flag_store)
        self.feature_flags = FeatureFlagEndpoints(self.flags, settings, verifier)
        self.dead_letters = DeadLetterEndpoints(runtime.bus, settings, verifier)
        self.control = ControlEndpoints(runtime.bus, settings, verifier)
        self.listing = ListingEndpoints(runtime.bus, settings, verifier)
        self.window = WindowEndpoints(runtime.bus, settings, verifier)
        self.api = Api(
            runtime.bus,
            settings,
            verifier,
            self._health,
            flags=self.flags,
            recorded_cost=self.costs.with_recorded_cost,
        )
        self.api.set_openapi(openapi_document())
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def app(self) -> web.Application:
        """A new application serving ROUTES and the console's pages (the tracing middleware outermost, so errors
        are in the span)."""
        app = web.Application(
            middlewares=[tracing_middleware, error_middleware],
            client_max_size=max(self.settings.gateway_max_body_bytes, self.settings.gateway_campaign_max_body_bytes),
        )
        for route in ROUTES:
            handler = self._bind(route.handler)
            app.router.add_route(route.method, route.path, self.guard.wrap(handler) if route.auth else handler)
        add_pages(app, trace_url=self.settings.gateway_console_trace_url)  # /console and /api/docs: no API
        return app

    def _bind(self, method: EndpointMethod) -> Handler:
        """A route's handler (`CostEndpoints.get_stats`) bound to this gateway's instance of its class."""
        endpoints = (
            self.api,
            self.costs,
            self.feature_flags,
            self.dead_letters,
            self.control,
            self.listing,
            self.window,
        )
        for owner in endpoints:
            if getattr(type(owner), method.__name__, None) is method:
                return cast(Handler, partial(method, owner))
        raise TypeError(f"no endpoint object of this gateway defines the route handler {method.__qualname__}")

    @property
    def url(self) -> str:
        host = self.settings.gateway_host
        if host in ("0.0.0.0", "::", ""):  # a wildcard bind is reachable on loopback
            host = "127.0.0.1"
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        await self.flags.start()  # before serving: the first request already sees the stored flags
        keys = self.guard.keys
        if keys is not None:
            try:
                await keys.refresh()  # before serving, so the first tokens need no fetch
            except KeySetUnavailable as exc:  # the provider may be down now: tokens retry it (ensure)
                log.warning("gateway.jwks.unavailable", url=keys.url, reason=str(exc))
        # tracing_middleware logs each request; GatewayRunner: header deadline, JSON 400 for unparsable requests
        self._runner = GatewayRunner(
            self.app(), header_timeout_s=self.settings.gateway_header_timeout_s, access_log=None
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.gateway_host, self.settings.gateway_port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise bind_error("GATEWAY_PORT", self.settings.gateway_host, self.settings.gateway_port, exc) from None
        addresses = self._runner.addresses  # the bound (host, port, ...): GATEWAY_PORT=0 picks a free port
        self.port = int(addresses[0][1]) if addresses else self.settings.gateway_port
        self._runtime.shared.gateway_url = self.url
        self.dead_letters.depth.start()  # the bus_dead_letters gauge
        log.info("gateway.listening", url=self.url, enabled=self.flags.flags.hybrid_orchestrator_enabled)

    async def stop(self) -> None:
        await self.dead_letters.depth.stop()
        await self._health.close()
        await self.guard.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.flags.stop()

    async def check(self) -> None:
        """Readiness: the site is bound."""
        if self._runner is None or self.port is None:
            raise RuntimeError("the HTTP site is not started")


def _request_bucket(settings: GatewaySettings) -> TokenBucket | None:
    """The per-user request limit (None: GATEWAY_RATE_LIMIT_RPS=0, no limit)."""
    if settings.gateway_rate_limit_rps <= 0:
        return None
    rate = Rate(per_s=settings.gateway_rate_limit_rps, burst=settings.gateway_rate_limit_burst)
    return open_token_bucket(settings.redis_url, rate, prefix=c.RATE_LIMIT_PREFIX)


async def create(runtime: Runtime, *, settings: GatewaySettings | None = None) -> Service:
    gateway = Gateway(runtime, runtime.settings_as(GatewaySettings, settings))
    return Service(
        name=GATEWAY,
        handlers={},
        on_start=[gateway.start],
        on_stop=[gateway.stop],
        checks={"http": gateway.check},
    )
