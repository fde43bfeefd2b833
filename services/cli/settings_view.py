"""`ho config`: the settings a service would run with in this environment, read by the same pydantic models
(services/<name>/config.py), as NAME=value lines — secrets masked."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator, Mapping
from enum import Enum
from typing import Any

from pydantic import SecretStr

from contracts.routing import AZURE_WORKER, COST_TRACKER, GATEWAY, OF_SENDER, OPENAI_WORKER, RATE_LIMITER, ROUTER
from libs.config import MASK, CommonSettings, is_secret_name, load_settings, mask_url_passwords
from services.azure_worker.config import AzureWorkerSettings
from services.cost_tracker.config import CostTrackerSettings
from services.gateway.config import GatewaySettings
from services.of_sender.config import OfSenderSettings
from services.openai_worker.config import OpenAIWorkerSettings
from services.rate_limiter.config import RateLimiterSettings
from services.router.config import RouterSettings

SETTINGS: Mapping[str, type[CommonSettings]] = {
    GATEWAY: GatewaySettings,
    ROUTER: RouterSettings,
    AZURE_WORKER: AzureWorkerSettings,
    OPENAI_WORKER: OpenAIWorkerSettings,
    RATE_LIMITER: RateLimiterSettings,
    OF_SENDER: OfSenderSettings,
    COST_TRACKER: CostTrackerSettings,
}


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "config",
        help="the effective settings, secrets masked",
        description="Print NAME=value for every setting a service reads (default: every service's, once each), "
        "as this environment sets it or the default. Secrets, and passwords in URLs, print as ***; an unset "
        "one prints empty.",
    )
    parser.add_argument("--service", choices=sorted(SETTINGS), help="only this service's settings")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for name, value in effective([args.service] if args.service else list(SETTINGS)):
        print(f"{name}={value}")
    return 0


def effective(services: list[str]) -> Iterator[tuple[str, str]]:
    """(VARIABLE, shown value) of the services' settings, sorted, each variable once. A bad value: ConfigError."""
    shown: dict[str, str] = {}
    for service in services:
        settings = load_settings(SETTINGS[service])
        for field in type(settings).model_fields:
            shown.setdefault(field.upper(), show(field, getattr(settings, field)))
    return iter(sorted(shown.items()))


def show(name: str, value: Any) -> str:
    """How `ho config` prints a setting's value: never a secret (a SecretStr, or a secret-like name)."""
    if value is None:
        return ""
    if isinstance(value, SecretStr) or is_secret_name(name):
        return MASK
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple | set | frozenset | dict):
        text = json.dumps(sorted(value) if isinstance(value, set | frozenset) else value, default=str)
    else:
        text = str(value)
    return mask_url_passwords(text)
