"""`make run`: the whole system in one process — the embedded mode.

All services on one bus (memory:// unless BUS_URL says otherwise), storage in memory unless DATABASE_URL /
REDIS_URL are set, and in-process simulators for every provider whose URL is not configured, speaking the
real wire formats so the real client code runs with no keys and no servers. This is the composition root:
the one place that imports every service.

It listens on 127.0.0.1 only (GATEWAY_HOST / HEALTH_HOST choose another interface): it prints tokens of a
fresh development key, admin included, so anyone who could reach it could use them.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

from libs.config import CommonSettings, load_settings
from libs.flags import MemoryFlagStore
from libs.runtime import ServiceFactory, Shared, run_main, serve
from libs.secrets_manager import resolve_secret_references
from libs.simulators import LLMSimulator, PlatformSimulator
from services.azure_worker.service import create as azure_worker
from services.cost_tracker.service import create as cost_tracker
from services.gateway.auth import make_token
from services.gateway.service import create as gateway
from services.of_sender.service import create as of_sender
from services.openai_worker.service import create as openai_worker
from services.rate_limiter.service import create as rate_limiter
from services.router.service import create as router

# Where the embedded mode listens unless GATEWAY_HOST / HEALTH_HOST say otherwise: this machine only.
LOOPBACK = "127.0.0.1"
# Who the printed development tokens are for.
DEV_USER = "creator-1"
DEV_ADMIN = "admin-1"
DEV_TOKEN_TTL_S = 24 * 3600

# The gateway starts last, so HTTP is served only once every consumer is subscribed.
FACTORIES: tuple[ServiceFactory, ...] = (
    router,
    azure_worker,
    openai_worker,
    rate_limiter,
    of_sender,
    cost_tracker,
    gateway,
)


def _needs_llm_simulator() -> bool:
    return not (os.environ.get("AZURE_OPENAI_ENDPOINT") and os.environ.get("OPENAI_BASE_URL"))


async def run(
    *,
    stop: asyncio.Event | None = None,
    started: asyncio.Event | None = None,
    shared: Shared | None = None,
    beside: Sequence[ServiceFactory] = (),
) -> None:
    """Run until SIGTERM/SIGINT or `stop`; `shared` (if given) receives what the services share, e.g. the
    gateway's URL once `started` is set; simulator URLs already in it are used instead of starting one.
    `beside`: services started after the system's on the same bus (tests: one that publishes on it)."""
    await resolve_secret_references()  # Secrets Manager references, before the settings below are read
    # A development secret, fresh per run, unless one is configured: the printed token is signed with it.
    os.environ.setdefault("GATEWAY_JWT_SECRET", secrets.token_urlsafe(32))
    # Completion webhooks: a developer's receiver runs on this machine, over plain http; the key that signs
    # them is fresh per run too unless configured, and printed below so the receiver can verify them.
    os.environ.setdefault("WEBHOOK_ALLOW_LOCAL_HTTP", "true")
    os.environ.setdefault("WEBHOOK_SECRET", secrets.token_urlsafe(32))
    os.environ.setdefault("GATEWAY_HOST", LOOPBACK)
    os.environ.setdefault("GATEWAY_PORT", "8080")
    os.environ.setdefault("HEALTH_HOST", LOOPBACK)
    os.environ.setdefault("HEALTH_PORT", "0")
    shared = Shared() if shared is None else shared
    if not os.environ.get("REDIS_URL") and shared.flag_store is None:
        # One flag store for every service of this process: a switch flipped or an account paused through
        # the gateway holds the router's and the of-sender's work too (with Redis they share the hash).
        shared.flag_store = MemoryFlagStore()
    simulator: LLMSimulator | None = None
    if _needs_llm_simulator() and shared.llm_simulator_url is None:
        simulator = LLMSimulator()
        shared.llm_simulator_url = await simulator.start()
    platform: PlatformSimulator | None = None
    if not os.environ.get("ONLYFANS_API_URL") and shared.platform_simulator_url is None:
        platform = PlatformSimulator()  # the platform's default limits: 10 per 60 s, 45 s per fan
        shared.platform_simulator_url = await platform.start()
    ready = started or asyncio.Event()
    banner = asyncio.create_task(_banner(ready, shared))
    try:
        await serve(
            (*FACTORIES, *beside),
            name="hybrid-orchestrator",
            settings=load_settings(CommonSettings),
            shared=shared,
            stop=stop,
            started=ready,
        )
    finally:
        banner.cancel()
        if simulator is not None:
            await simulator.stop()
        if platform is not None:
            await platform.stop()


async def _banner(ready: asyncio.Event, shared: Shared) -> None:
    await ready.wait()
    print(banner(shared.gateway_url or f"http://{LOOPBACK}:8080"), file=sys.stderr, flush=True)


def banner(url: str) -> str:
    """What `make run` prints once it serves: the URLs (the console's as a login link with the admin's token in
    its fragment), a user's and an admin's token (signed with this run's GATEWAY_JWT_SECRET, valid 24 h), the
    webhook key and sample requests."""
    secret = os.environ["GATEWAY_JWT_SECRET"]
    token = make_token(secret, sub=DEV_USER, ttl_s=DEV_TOKEN_TTL_S)
    admin = make_token(secret, sub=DEV_ADMIN, role="admin", ttl_s=DEV_TOKEN_TTL_S)
    body = '{"type": "message_generation", "data": {"fanName": "Alex", "topic": "weekend plans"}}'
    return (
        f"\nHybrid Orchestrator is running (embedded mode)\n"
        f"  console:  {url}/console#token={admin}\n"
        f"            (signs you in as {DEV_ADMIN}; as {DEV_USER}: {url}/console#token={token})\n"
        f"  gateway:  {url}\n"
        f"  api docs: {url}/api/docs\n"
        f"  openapi:  {url}/api/openapi.json\n"
        f"  health:   {url}/api/health/hybrid-orchestrator\n"
        f"  user token ({DEV_USER}, 24 h):\n    {token}\n"
        f"  admin token ({DEV_ADMIN}, role admin, 24 h):\n    {admin}\n"
        f"  webhook secret (X-Signature key):\n    {os.environ['WEBHOOK_SECRET']}\n\n"
        f"  try:\n"
        f"    curl -s -X POST '{url}/api/v2/campaigns/hybrid?wait=true' \\\n"
        f"      -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' \\\n"
        f"      -d '{body}'\n"
        f"    curl -s '{url}/api/admin/feature-flags' -H 'Authorization: Bearer {admin}'\n"
        f"    {_ho()} flags get --url {url} --token {admin}\n"
    )


def _ho() -> str:
    """The `ho` command: the one installed beside this Python (.venv/bin/ho) when it is there."""
    beside = Path(sys.executable).with_name("ho")
    return str(beside) if beside.exists() else "ho"


def main() -> None:
    run_main(run(), "embedded")


if __name__ == "__main__":
    main()
