"""deploy/ecs task-definition templates: valid RegisterTaskDefinition input (botocore's own parameter
validation against the ECS service model, the check the AWS CLI runs before sending), and in step with the
services (commands, settings names, health port)."""

from __future__ import annotations

import json
import re
import string
from typing import Any

import botocore.session
import pytest
from botocore.validate import ParamValidator

from contracts.routing import SERVICES
from tests.deploy.support import load_ecs, package_of, runnable, settings_env_names, unknown_env

# The placeholders deploy/ecs/README.md documents (filled with envsubst before registering).
PLACEHOLDERS = {
    "AWS_REGION": "eu-west-1",
    "AWS_ACCOUNT_ID": "111122223333",
    "IMAGE": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/hybrid-orchestrator:0.1.0",
    "ADOT_COLLECTOR_IMAGE": "public.ecr.aws/aws-observability/aws-otel-collector:latest",
}
HEALTH_PORT = 8081


@pytest.fixture(scope="module")
def definitions() -> dict[str, dict[str, Any]]:
    return load_ecs()


@pytest.fixture(scope="module")
def validator_shape() -> Any:
    model = botocore.session.get_session().get_service_model("ecs")
    return model.operation_model("RegisterTaskDefinition").input_shape


def filled(definition: dict[str, Any]) -> dict[str, Any]:
    """The template with its placeholders substituted, as envsubst would."""
    return json.loads(string.Template(json.dumps(definition)).substitute(PLACEHOLDERS))


def app_container(definition: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in definition["containerDefinitions"] if c["name"] == name)


class TestEcsTemplates:
    def test_there_is_a_template_per_service_and_for_migrations(self, definitions: dict[str, Any]) -> None:
        """One task definition per service in SERVICES, plus the one-shot migrate, and nothing else."""
        assert sorted(definitions) == sorted([*SERVICES, "migrate"])

    @pytest.mark.parametrize("name", [*SERVICES, "migrate"])
    def test_template_is_valid_register_input(
        self, definitions: dict[str, Any], validator_shape: Any, name: str
    ) -> None:
        """Filled in, the template passes botocore's RegisterTaskDefinition validation."""
        report = ParamValidator().validate(filled(definitions[name]), validator_shape)
        assert not report.has_errors(), report.generate_report()

    def test_validation_rejects_a_misspelt_field(self, definitions: dict[str, Any], validator_shape: Any) -> None:
        """botocore's validation catches a typo (so a pass above means something)."""
        broken = filled(definitions["router"])
        broken["containerDefinitions"][0]["readOnlyRootFilesystem"] = True
        assert ParamValidator().validate(broken, validator_shape).has_errors()

    def test_only_documented_placeholders(self, definitions: dict[str, Any]) -> None:
        """Every ${...} in the templates is one of the documented placeholders."""
        used = {m for d in definitions.values() for m in re.findall(r"\$\{([A-Z_]+)\}", json.dumps(d))}
        assert used <= set(PLACEHOLDERS)

    @pytest.mark.parametrize("service", SERVICES)
    def test_service_container_runs_its_package_safely(self, definitions: dict[str, Any], service: str) -> None:
        """The service container runs its package, read-only, without capabilities, with a liveness check on
        the health port and a stop timeout longer than SHUTDOWN_GRACE_S."""
        container = app_container(definitions[service], service)
        assert container["command"] == ["python", "-m", f"services.{package_of(service)}"]
        assert runnable(container["command"][2])
        assert container["readonlyRootFilesystem"] is True
        assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"]
        assert f"http://127.0.0.1:{HEALTH_PORT}/healthz" in " ".join(container["healthCheck"]["command"])
        environment = {e["name"]: e["value"] for e in container["environment"]}
        assert environment["HEALTH_PORT"] == str(HEALTH_PORT)
        assert container["stopTimeout"] > float(environment["SHUTDOWN_GRACE_S"])

    @pytest.mark.parametrize("service", SERVICES)
    def test_settings_names_are_read_by_the_service(self, definitions: dict[str, Any], service: str) -> None:
        """Environment and secret names given to a service are settings it reads."""
        container = app_container(definitions[service], service)
        names = [e["name"] for e in container["environment"]] + [s["name"] for s in container["secrets"]]
        assert unknown_env(names, settings_env_names(service)) == []

    def test_secrets_come_from_secrets_manager(self, definitions: dict[str, Any]) -> None:
        """Every secret a service is given is its own key of one of the two Secrets Manager secrets
        (DATABASE_URL from huntaze/database/production, where the original plan keeps it); the collector
        sidecars' configuration, no secret, comes from SSM (tests/deploy/test_cloudwatch.py)."""
        given = [
            (secret["name"], secret["valueFrom"])
            for definition in definitions.values()
            for container in definition["containerDefinitions"]
            if container["name"] != "otel-collector"
            for secret in container.get("secrets", [])
        ]
        assert given
        for name, value_from in given:
            secret = (
                "huntaze/database/production" if name == "DATABASE_URL" else "huntaze/hybrid-orchestrator/production"
            )
            assert value_from == f"arn:aws:secretsmanager:${{AWS_REGION}}:${{AWS_ACCOUNT_ID}}:secret:{secret}:{name}::"

    def test_migrate_runs_migrate_all(self, definitions: dict[str, Any]) -> None:
        """The migrate task runs the one-shot migrate_all with DATABASE_URL from a secret."""
        container = app_container(definitions["migrate"], "migrate")
        assert container["command"] == ["python", "-m", "libs.storage.migrate_all"]
        assert [s["name"] for s in container["secrets"]] == ["DATABASE_URL"]
