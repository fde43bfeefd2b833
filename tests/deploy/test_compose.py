"""docker-compose.yml: valid against the Compose Specification's JSON Schema, and in step with the code.

tests/deploy/compose-spec.json is the Compose Specification schema (compose-spec/compose-spec,
schema/compose-spec.json, draft-07) as shipped in the npm package dclint 3.1.0 (schemas/compose.schema.json);
shipped here because the suite runs without network. No Docker engine runs here: `docker compose config`
was not run, the schema stands in for it.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from contracts.routing import GATEWAY, SERVICES
from services.gateway.config import parse_health_urls
from tests.deploy.support import (
    load_compose,
    package_of,
    runnable,
    settings_env_names,
    unknown_env,
)

SCHEMA_FILE = Path(__file__).with_name("compose-spec.json")
HEALTH_PORT = 8081
SIMULATOR_PROFILE = "demo"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def errors(validator: jsonschema.Draft7Validator, document: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def python_module(command: list[str]) -> str:
    assert command[:2] == ["python", "-m"], command
    return command[2]


class TestComposeSchema:
    def test_compose_file_validates(self, compose: dict[str, Any], validator: jsonschema.Draft7Validator) -> None:
        """docker-compose.yml has no error against the Compose Specification schema."""
        assert errors(validator, compose) == []

    def test_schema_rejects_a_misspelt_service_key(
        self, compose: dict[str, Any], validator: jsonschema.Draft7Validator
    ) -> None:
        """The schema is strict enough to catch a typo in a service (so a pass above means something)."""
        broken = copy.deepcopy(compose)
        broken["services"]["router"]["depends_onn"] = broken["services"]["router"].pop("depends_on")
        assert any("depends_onn" in error for error in errors(validator, broken))

    def test_schema_rejects_an_unknown_dependency_condition(
        self, compose: dict[str, Any], validator: jsonschema.Draft7Validator
    ) -> None:
        """A depends_on condition outside the specification's enum is an error."""
        broken = copy.deepcopy(compose)
        broken["services"]["router"]["depends_on"]["migrate"]["condition"] = "service_done"
        assert errors(validator, broken)


class TestComposeServices:
    @pytest.mark.parametrize("service", SERVICES)
    def test_every_service_has_an_entry_running_its_package(self, compose: dict[str, Any], service: str) -> None:
        """Each service of contracts.routing.SERVICES runs `python -m services.<package>` from the one image."""
        entry = compose["services"].get(service)
        assert entry is not None, f"docker-compose.yml has no service {service!r}"
        assert entry["command"] == ["python", "-m", f"services.{package_of(service)}"]
        assert runnable(f"services.{package_of(service)}")
        assert entry["image"] == compose["services"][GATEWAY]["image"]

    @pytest.mark.parametrize("service", SERVICES)
    def test_every_service_is_checked_on_its_readiness_endpoint(self, compose: dict[str, Any], service: str) -> None:
        """The healthcheck asks /readyz on HEALTH_PORT, and HEALTH_PORT is what the service is told."""
        entry = compose["services"][service]
        assert entry["environment"]["HEALTH_PORT"] == str(HEALTH_PORT)
        assert f"http://127.0.0.1:{HEALTH_PORT}/readyz" in " ".join(entry["healthcheck"]["test"])

    @pytest.mark.parametrize("service", SERVICES)
    def test_every_service_runs_unprivileged(self, compose: dict[str, Any], service: str) -> None:
        """Non-root user, read-only root filesystem, no capabilities, no privilege escalation."""
        entry = compose["services"][service]
        assert not entry["user"].startswith("0")
        assert entry["read_only"] is True
        assert entry["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in entry["security_opt"]

    @pytest.mark.parametrize("service", SERVICES)
    def test_environment_names_are_settings_the_service_reads(self, compose: dict[str, Any], service: str) -> None:
        """Every variable given to a service is one of its settings (a typo would be silently ignored)."""
        names = list(compose["services"][service]["environment"])
        assert unknown_env(names, settings_env_names(service)) == []

    def test_otlp_goes_to_jaeger(self, compose: dict[str, Any]) -> None:
        """Every service exports OTLP over HTTP to the jaeger service, which publishes its UI."""
        for service in SERVICES:
            environment = compose["services"][service]["environment"]
            assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
            assert environment["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
        assert "127.0.0.1:16686:16686" in compose["services"]["jaeger"]["ports"]

    def test_gateway_health_covers_every_other_service(self, compose: dict[str, Any]) -> None:
        """GATEWAY_HEALTH_URLS names each other service, at its own host and health port."""
        urls = parse_health_urls(compose["services"][GATEWAY]["environment"]["GATEWAY_HEALTH_URLS"])
        assert sorted(urls) == sorted(s for s in SERVICES if s != GATEWAY)
        for name, url in urls.items():
            assert url == f"http://{name}:{HEALTH_PORT}/readyz"


class TestComposeExposure:
    def test_ports_are_published_on_loopback_only(self, compose: dict[str, Any]) -> None:
        """Every published port binds 127.0.0.1: the default passwords never face a network."""
        published = [(name, port) for name, entry in compose["services"].items() for port in entry.get("ports", [])]
        assert published, "the gateway, Jaeger and RabbitMQ's UI are published"
        assert [(name, port) for name, port in published if not str(port).startswith("127.0.0.1:")] == []

    @pytest.mark.parametrize(("service", "name"), [(GATEWAY, "GATEWAY_JWT_SECRET"), ("router", "WEBHOOK_SECRET")])
    def test_signing_keys_have_no_default(self, compose: dict[str, Any], service: str, name: str) -> None:
        """The JWT and webhook keys must be given (${NAME:?…}): a public default passes the length check, and
        anyone could mint admin tokens or forge webhooks with it."""
        value = compose["services"][service]["environment"][name]
        assert re.fullmatch(rf"\$\{{{name}:\?[^}}]+\}}", value), value


class TestComposeDependencies:
    def test_dependencies_exist_and_have_conditions(self, compose: dict[str, Any]) -> None:
        """Every depends_on names a defined service with an explicit condition."""
        for name, entry in compose["services"].items():
            for dependency, spec in entry.get("depends_on", {}).items():
                assert dependency in compose["services"], f"{name} depends on undefined {dependency}"
                assert "condition" in spec, f"{name} → {dependency} has no condition"

    def test_database_users_wait_for_the_migration(self, compose: dict[str, Any]) -> None:
        """A service given DATABASE_URL starts only after the one-shot migrate service succeeded."""
        users = [n for n, e in compose["services"].items() if "DATABASE_URL" in e.get("environment", {})]
        assert set(users) >= {"router", "migrate"}
        for name in users:
            if name == "migrate":
                continue
            condition = compose["services"][name]["depends_on"]["migrate"]["condition"]
            assert condition == "service_completed_successfully"

    def test_migrate_is_a_one_shot_of_migrate_all(self, compose: dict[str, Any]) -> None:
        """The migration runs once (no restart) with `python -m libs.storage.migrate_all`, after PostgreSQL."""
        migrate = compose["services"]["migrate"]
        assert migrate["command"] == ["python", "-m", "libs.storage.migrate_all"]
        assert migrate["restart"] == "no"
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    def test_infrastructure_has_healthchecks_the_services_wait_for(self, compose: dict[str, Any]) -> None:
        """RabbitMQ, PostgreSQL and Redis have healthchecks, and services wait for them to be healthy."""
        for infrastructure in ("rabbitmq", "postgres", "redis"):
            assert "healthcheck" in compose["services"][infrastructure]
        for service in SERVICES:
            assert compose["services"][service]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"


class TestComposeSimulators:
    def test_simulators_are_behind_the_demo_profile(self, compose: dict[str, Any]) -> None:
        """Both simulators run only with --profile demo, from the one image, on modules that exist."""
        for name in ("llm-simulator", "platform-simulator"):
            entry = compose["services"][name]
            assert entry["profiles"] == [SIMULATOR_PROFILE]
            assert entry["image"] == compose["services"][GATEWAY]["image"]
            assert runnable(python_module(entry["command"])), entry["command"]

    def test_services_depending_on_a_simulator_do_not_require_it(self, compose: dict[str, Any]) -> None:
        """A dependency on a profile-only simulator is optional, so `docker compose up` works without it."""
        profiled = {n for n, e in compose["services"].items() if e.get("profiles")}
        for name, entry in compose["services"].items():
            if entry.get("profiles"):
                continue
            for dependency, spec in entry.get("depends_on", {}).items():
                if dependency in profiled:
                    assert spec.get("required") is False, f"{name} requires profile-only {dependency}"

    def test_provider_urls_default_to_the_simulators_ports(self, compose: dict[str, Any]) -> None:
        """The workers' and of-sender's default provider URLs point at the simulators' published ports."""
        services = compose["services"]
        llm_port = services["llm-simulator"]["environment"]["LLM_SIMULATOR_PORT"]
        platform_port = services["platform-simulator"]["environment"]["PLATFORM_SIMULATOR_PORT"]
        defaults = {
            services["azure-worker"]["environment"]["AZURE_OPENAI_ENDPOINT"]: f"http://llm-simulator:{llm_port}",
            services["openai-worker"]["environment"]["OPENAI_BASE_URL"]: f"http://llm-simulator:{llm_port}/v1",
            services["of-sender"]["environment"]["ONLYFANS_API_URL"]: f"http://platform-simulator:{platform_port}",
        }
        for value, expected in defaults.items():
            match = re.fullmatch(r"\$\{[A-Z_]+:-(.+)\}", value)
            assert match is not None and match[1] == expected, value
