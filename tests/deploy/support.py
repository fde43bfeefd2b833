"""What the deployment checks compare the manifests against: the services, their packages and settings.

Everything here is derived from the code (contracts.routing, each service's settings classes), never
listed by hand, so a new service or setting shows up as drift in the manifests, not in this file.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from contracts.routing import SERVICES, keys_consumed_by
from libs.config import CommonSettings
from libs.telemetry import constants as telemetry

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
K8S_BASE = K8S_DIR / "base"
K8S_OVERLAYS = sorted(path for path in (K8S_DIR / "overlays").iterdir() if path.is_dir())
SECRET_EXAMPLE = K8S_BASE / "secret.example.yaml"
ECS_DIR = REPO_ROOT / "deploy" / "ecs"

# Variables read outside the settings classes: the standard OTEL_* ones (by the SDK and libs.telemetry)
# and the logging switches.
ENV_PREFIXES_READ_ELSEWHERE = ("OTEL_",)
ENV_READ_ELSEWHERE = frozenset({telemetry.ENV_LOG_FORMAT, telemetry.ENV_LOG_LEVEL})


def package_of(service: str) -> str:
    """The Python package of a service: azure-worker → azure_worker (run as python -m services.<it>)."""
    return service.replace("-", "_")


def runnable(module: str) -> bool:
    """Whether `python -m module` would run something: a package with a __main__, or a module with an
    `if __name__ == "__main__":` block (checked in its source, without running it)."""
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:
        return False
    if spec is None:
        return False
    if spec.submodule_search_locations is not None:
        return runnable(f"{module}.__main__") or _has_main_block(spec.origin)
    return spec.origin is not None and (spec.origin.endswith("__main__.py") or _has_main_block(spec.origin))


def _has_main_block(origin: str | None) -> bool:
    if origin is None or not origin.endswith(".py"):
        return False
    for node in ast.parse(Path(origin).read_text()).body:
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
            and any(isinstance(c, ast.Constant) and c.value == "__main__" for c in node.test.comparators)
        ):
            return True
    return False


def consumers() -> list[str]:
    """The services that consume a queue of their own (all but the gateway today)."""
    return [service for service in SERVICES if keys_consumed_by(service)]


def _env_names(settings: type[BaseSettings]) -> set[str]:
    prefix = str(settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for name, field in settings.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias.upper())
        elif isinstance(alias, AliasChoices):
            names |= {choice.upper() for choice in alias.choices if isinstance(choice, str)}
        else:
            names.add(f"{prefix}{name}".upper())
    return names


@functools.cache
def settings_env_names(service: str) -> frozenset[str]:
    """Every environment variable the settings classes of `service` read (CommonSettings' included)."""
    classes: list[type[BaseSettings]] = [CommonSettings]
    module_name = f"services.{package_of(service)}.config"
    if importlib.util.find_spec(module_name) is not None:
        module = importlib.import_module(module_name)
        classes += [
            value
            for value in vars(module).values()
            if isinstance(value, type) and issubclass(value, BaseSettings) and value.__module__ == module_name
        ]
    return frozenset().union(*(_env_names(cls) for cls in classes))


def unknown_env(names: set[str] | list[str], known: frozenset[str]) -> list[str]:
    """The names in `names` that nothing reads: not in `known`, not OTEL_*, not a logging switch."""
    return sorted(
        name
        for name in names
        if name not in known and name not in ENV_READ_ELSEWHERE and not name.startswith(ENV_PREFIXES_READ_ELSEWHERE)
    )


def load_compose() -> dict[str, Any]:
    """docker-compose.yml as compose sees it before interpolation (YAML anchors and merge keys resolved)."""
    with COMPOSE_FILE.open() as stream:
        return yaml.safe_load(stream)  # type: ignore[no-any-return]


def load_ecs() -> dict[str, dict[str, Any]]:
    """The ECS task-definition templates by file stem (service name or "migrate")."""
    return {path.stem: json.loads(path.read_text()) for path in sorted(ECS_DIR.glob("*.json"))}
