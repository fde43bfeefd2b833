"""The of-sender as a service: its store (PostgreSQL when DATABASE_URL is set, else in memory), the send
log (Redis when REDIS_URL is set, else in memory), the platform, declared for libs.runtime.

The platform is a `Platform` handed to `create` (another platform's API, a test double), else the HTTP client
on ONLYFANS_API_URL; without it, on the platform simulator the runner shares
(`runtime.shared.platform_simulator_url`, the embedded mode); with none of them, `create` raises
PlatformConfigError.

The feature flags (libs.flags) come from Redis when REDIS_URL is set, else from this process, unless the
runner shares the store of every service of the process (`runtime.shared.flag_store`, the embedded mode).
"""

from __future__ import annotations

import asyncio
import contextlib

from contracts.routing import OF_SENDER
from libs.flags import open_flag_client
from libs.ratelimit import MemorySendLog, open_send_log
from libs.runtime import Runtime, Service
from libs.runtime.periodic import in_batches_forever
from libs.telemetry import get_logger
from services.of_sender.client import PlatformClient
from services.of_sender.config import OfSenderSettings, PlatformConfigError
from services.of_sender.constants import (
    ATTEMPT_RETENTION_S,
    PURGE_BATCH,
    PURGE_INTERVAL_S,
    SIMULATOR_TOKEN,
)
from services.of_sender.pg_store import PostgresMessageStore
from services.of_sender.platform import Platform
from services.of_sender.sender import Sender
from services.of_sender.store import MemoryMessageStore, MessageStore

log = get_logger(__name__)


def build_store(settings: OfSenderSettings) -> MessageStore:
    if settings.database_url:
        return PostgresMessageStore(
            settings.database_url, pool_size=settings.database_pool_size, schema=settings.of_sender_db_schema
        )
    return MemoryMessageStore()


def platform_endpoint(settings: OfSenderSettings, simulator_url: str | None) -> tuple[str, str, bool]:
    """(base URL, bearer token, simulated?) of the platform API (`simulator_url`: the runner's simulator)."""
    token = settings.onlyfans_api_token.get_secret_value() if settings.onlyfans_api_token else None
    if settings.onlyfans_api_url:
        if not token:
            raise PlatformConfigError("required when ONLYFANS_API_URL is set", "ONLYFANS_API_TOKEN")
        return settings.onlyfans_api_url, token, False
    if not simulator_url:
        raise PlatformConfigError(
            "required, with ONLYFANS_API_TOKEN (or run embedded with the simulator)", "ONLYFANS_API_URL"
        )
    return simulator_url, token or SIMULATOR_TOKEN, True


async def create(runtime: Runtime, *, store: MessageStore | None = None, platform: Platform | None = None) -> Service:
    """The of-sender on `store` and `platform` (handed in by tests), else on those its settings name."""
    settings = runtime.settings_as(OfSenderSettings)
    store = store or build_store(settings)
    simulated = False
    if platform is None:
        url, token, simulated = platform_endpoint(settings, runtime.shared.platform_simulator_url)
        platform = PlatformClient(url, token, timeout_s=settings.onlyfans_timeout_s)
    send_log = open_send_log(settings.redis_url, settings.limits(), prefix=settings.of_sender_key_prefix)
    bypass_log = MemorySendLog(settings.bypass_limits())
    flags = open_flag_client(settings, store=runtime.shared.flag_store)
    sender = Sender(runtime.bus, store, send_log, platform, settings, bypass_log=bypass_log, flags=flags)
    limits = settings.limits()
    log.info(
        "of_sender.configured",
        platform=type(platform).__name__,
        simulated=simulated,
        account_limit=limits.account_limit,
        window_ms=limits.window_ms,
        recipient_gap_ms=limits.recipient_gap_ms,
        send_log="redis" if settings.redis_url else "memory",
        down_policy=settings.rate_limiter_down_policy.value,
    )
    purge: list[asyncio.Task[None]] = []

    async def start() -> None:
        await store.start()
        await platform.start()
        await flags.start()  # before consuming: the first approval already sees the stored flags

        async def purge_attempts() -> int:  # send attempts older than the retention
            return await store.purge_attempts(ATTEMPT_RETENTION_S, PURGE_BATCH)

        purging = in_batches_forever(purge_attempts, PURGE_BATCH, PURGE_INTERVAL_S, "attempts.purge_failed")
        purge.append(asyncio.create_task(purging, name="of_sender.purge"))

    async def stop() -> None:
        for task in purge:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await flags.stop()
        await platform.close()
        await send_log.close()
        await store.close()

    return Service(
        name=OF_SENDER,
        handlers=sender.handlers(),
        on_start=[start],
        on_stop=[stop],
        checks={"database": store.ping, "send_log": send_log.ping, "platform_client": platform.ping},
    )
