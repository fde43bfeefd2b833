"""Settings every service shares, from environment variables (pydantic-settings).

Each service extends `CommonSettings` with its own fields in services/<name>/config.py. Names follow the
seed where it has them (DATABASE_URL, REDIS_URL, ...); the standard OTEL_* variables are read by
libs.telemetry directly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    bus_url: str = Field(default="memory://", description="memory://, amqp://user:pass@host/, sqs://?region=")
    bus_namespace: str = Field(default="ho", description="prefix of every queue and exchange")
    bus_prefetch: int = Field(default=32, ge=1, description="messages each service handles at once")
    database_url: str | None = Field(default=None, description="PostgreSQL; unset: in-memory storage")
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str | None = Field(default=None, description="Redis; unset: in-process state")
    health_port: int = Field(default=8081, ge=0, le=65535, description="liveness/readiness HTTP port")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus /metrics port (libs.runtime.metrics_http); unset: off"
    )
    shutdown_grace_s: float = Field(default=30.0, gt=0, description="drain time on SIGTERM")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="uvloop (libuv, less CPU per message) or the standard library's loop"
    )
