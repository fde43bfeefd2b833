"""Settings every service shares, from environment variables (pydantic-settings), and what a bad one is.

Each service extends `CommonSettings` with its own fields in services/<name>/config.py. Names follow the
seed where it has them (DATABASE_URL, REDIS_URL, ...); the standard OTEL_* variables are read by
libs.telemetry directly.

Settings are read with `load_settings`, which turns pydantic's ValidationError into a `ConfigError`: one
line naming the variable and the problem, never the value (pydantic's own message quotes the input, which
printed a too-short GATEWAY_JWT_SECRET). libs.runtime prints a ConfigError as that one line and exits 2.
"""

from __future__ import annotations

import errno
import os
import re
import socket
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

# A variable whose name holds one of these, or ends in "key" (OPENAI_API_KEY; not *_KEY_PREFIX, a Redis key
# name), is a secret: its value is never printed (`ho config` masks it, error lines redact it).
SECRET_NAME_PARTS = ("secret", "password", "passwd", "token", "credential")
SECRET_NAME_SUFFIX = "key"
MASK = "***"
# scheme://user:password@ — the password part (group 1 keeps what precedes it).
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^\s/]+@")
# Exit status of a process that cannot run with its configuration (argparse's for bad arguments, too).
CONFIG_EXIT_STATUS = 2

# Defaults of BUS_PREFETCH and SHUTDOWN_GRACE_S below, which are also the bus's own defaults for a subscription
# and a close (libs.bus.constants takes them from here: one value each).
DEFAULT_BUS_PREFETCH = 32
DEFAULT_SHUTDOWN_GRACE_S = 30.0

S = TypeVar("S", bound=BaseSettings)


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    bus_url: str = Field(default="memory://", description="memory://, amqp://user:pass@host/, sqs://?region=")
    bus_namespace: str = Field(default="ho", description="prefix of every queue and exchange")
    bus_prefetch: int = Field(default=DEFAULT_BUS_PREFETCH, ge=1, description="messages each service handles at once")
    database_url: str | None = Field(default=None, description="PostgreSQL; unset: in-memory storage")
    database_pool_size: int = Field(default=10, ge=1)
    redis_url: str | None = Field(default=None, description="Redis; unset: in-process state")
    health_host: str = Field(default="0.0.0.0", description="interface of /healthz and /readyz (probes: all)")
    health_port: int = Field(default=8081, ge=0, le=65535, description="liveness/readiness HTTP port")
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus /metrics port (libs.runtime.metrics_http); unset: off"
    )
    shutdown_grace_s: float = Field(default=DEFAULT_SHUTDOWN_GRACE_S, gt=0, description="drain time on SIGTERM")
    event_loop: Literal["uvloop", "asyncio"] = Field(
        default="uvloop", description="uvloop (libuv, less CPU per message) or the standard library's loop"
    )


class ConfigError(ValueError):
    """A setting the process cannot run with: `variable` (the environment variable to blame, when one is)
    and `problem`, which never contains a secret's value."""

    def __init__(self, problem: str, variable: str | None = None) -> None:
        self.problem = problem
        self.variable = variable
        super().__init__(f"{variable}: {problem}" if variable else problem)


def load_settings(cls: type[S], **values: Any) -> S:
    """`cls` read from the environment (`values` override it); raises ConfigError for a bad or missing value."""
    try:
        return cls(**values)
    except ValidationError as exc:
        # from None: the ValidationError (with the input values) must not travel on as the cause.
        raise config_error(exc) from None


def config_error(exc: ValidationError) -> ConfigError:
    """One ConfigError for a settings model's ValidationError, built from `exc.errors()` without inputs."""
    problems: list[tuple[str | None, str]] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = error.get("loc") or ()
        variable = str(loc[0]).upper() if loc else None
        problems.append((variable, _problem(variable, error["type"], error["msg"])))
    variable, problem = problems[0]
    if len(problems) > 1:
        # One line still: the first variable is the one to blame, the others follow it.
        problem += "".join(f"; {var}: {text}" if var else f"; {text}" for var, text in problems[1:])
    return ConfigError(problem, variable)


def _problem(variable: str | None, kind: str, message: str) -> str:
    if kind == "missing":
        return "required, not set"
    for prefix in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(prefix)
    if variable:
        # A validator's message often opens with the variable's name, which the line already gives.
        message = message.removeprefix(variable).lstrip(": ")
    if message[:1].isupper() and message[1:2].islower():
        message = message[0].lower() + message[1:]
    return redact(message)


def redact(text: str) -> str:
    """`text` with the value of every secret-named environment variable, and any URL's password, masked."""
    for name, value in os.environ.items():
        if len(value) >= 4 and is_secret_name(name) and value in text:
            text = text.replace(value, MASK)
    return mask_url_passwords(text)


def mask_url_passwords(text: str) -> str:
    """`text` with the password of every URL in it (scheme://user:password@host) replaced by MASK."""
    return _URL_PASSWORD.sub(rf"\g<1>{MASK}@", text)


def is_secret_name(name: str) -> bool:
    """Whether a setting of this name holds a secret (see SECRET_NAME_PARTS)."""
    lowered = name.lower()
    return lowered.endswith(SECRET_NAME_SUFFIX) or any(part in lowered for part in SECRET_NAME_PARTS)


def bind_error(variable: str, host: str, port: int, exc: OSError) -> ConfigError:
    """A ConfigError for a server that could not listen on host:port (`variable` names the port's setting)."""
    if isinstance(exc, socket.gaierror):
        return ConfigError(f"cannot listen on {host}:{port}: the host name does not resolve", variable)
    problems = {
        errno.EADDRINUSE: f"port {port} is already in use on {host}",
        errno.EACCES: f"no permission to listen on port {port} (below 1024 needs privileges)",
        errno.EADDRNOTAVAIL: f"cannot listen on {host}:{port}: not an address of this machine",
    }
    return ConfigError(problems.get(exc.errno or 0, f"cannot listen on {host}:{port}: {exc.strerror or exc}"), variable)
