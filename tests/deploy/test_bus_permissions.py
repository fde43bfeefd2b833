"""The generated broker permissions are up to date, agree with the services' code and are valid policies."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from moto.iam.policy_validation import IAMPolicyDocumentValidator

from contracts import messages as m
from contracts import routing as r
from libs.bus import permissions as p
from tests.deploy.kustomize import load_documents
from tests.deploy.support import ECS_DIR, K8S_BASE, SECRET_EXAMPLE

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
IAM = ROOT / "deploy" / "aws" / "iam"
# Where each service's bus calls live: its package, and the shared worker for both workers.
SOURCES = {s: [ROOT / "services" / s.replace("-", "_")] for s in r.SERVICES}
SOURCES[r.AZURE_WORKER].append(ROOT / "libs" / "llm")
SOURCES[r.OPENAI_WORKER].append(ROOT / "libs" / "llm")
MESSAGES = {cls.__name__: cls.TYPE for cls in vars(m).values() if isinstance(cls, type) and hasattr(cls, "TYPE")}


def _message_type(key: str) -> str:
    """The message type a routing key carries (generation.requested.azure → generation.requested)."""
    return key if key in MESSAGES.values() else key.rsplit(".", 1)[0]


ROUTED_TYPES = {_message_type(key) for key in r.ROUTES}


class TestCommittedFilesAreUpToDate:
    def test_rabbitmq_definitions(self) -> None:
        """deploy/rabbitmq/definitions.json is what `python -m libs.bus.permissions rabbitmq` prints."""
        assert DEFINITIONS.read_text() == p.render(p.rabbitmq_definitions("ho")), (
            "regenerate: python -m libs.bus.permissions rabbitmq > deploy/rabbitmq/definitions.json"
        )

    @pytest.mark.parametrize("service", r.SERVICES)
    def test_iam_policy(self, service: str) -> None:
        """deploy/aws/iam/<service>.json is what `python -m libs.bus.permissions iam` writes."""
        assert (IAM / f"{service}.json").read_text() == p.render(p.iam_policy(service, "ho")), (
            "regenerate: python -m libs.bus.permissions iam"
        )

    def test_no_stray_policy_files(self) -> None:
        """Every file in deploy/aws/iam belongs to a service (a renamed service leaves no stale policy)."""
        assert sorted(f.stem for f in IAM.glob("*.json")) == sorted(r.SERVICES)


class TestPublishTableMatchesTheCode:
    @pytest.mark.parametrize("service", r.SERVICES)
    def test_every_message_a_service_builds_is_consumed_published_or_requested(self, service: str) -> None:
        """A routed message class named in a service's code is one it consumes, publishes or requests:
        a new publish not added to PUBLISHES would be refused by the broker in production."""
        consumed = {k for q in r.queues_of(service) for k in r.keys_consumed_by(q)}
        keys = consumed | set(p.PUBLISHES[service]) | set(p.REQUESTS.get(service, ()))
        allowed = {_message_type(k) for k in keys}
        named: set[str] = set()
        for folder in SOURCES[service]:
            for path in folder.rglob("*.py"):
                named |= set(re.findall(r"\b([A-Z][A-Za-z]+)\b", path.read_text()))
        types = {MESSAGES[n] for n in named if n in MESSAGES and MESSAGES[n] in ROUTED_TYPES}
        assert types <= allowed, f"{service} names {sorted(types - allowed)}: add them to PUBLISHES"

    def test_published_keys_are_routed(self) -> None:
        """Every key in PUBLISHES and REQUESTS has a consumer (a typo would grant nothing)."""
        for keys in (*p.PUBLISHES.values(), *p.REQUESTS.values()):
            assert all(r.consumers(key) for key in keys), keys


class TestEachServiceHasItsOwnCredentials:
    @pytest.mark.parametrize("service", r.SERVICES)
    def test_k8s_deployment_reads_its_own_bus_url(self, service: str) -> None:
        """The Deployment's BUS_URL is the Secret key BUS_URL_<SERVICE> (its own broker user), not a shared one."""
        deployment = next(d for d in load_documents(K8S_BASE / f"{service}.yaml") if d["kind"] == "Deployment")
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        key = env["BUS_URL"]["valueFrom"]["secretKeyRef"]["key"]
        assert key == "BUS_URL_" + service.upper().replace("-", "_")
        example = load_documents(SECRET_EXAMPLE)[0]["stringData"][key]
        assert example.startswith(f"amqp://{p.user_name('ho', service)}:") and example.endswith("?declare=false")

    @pytest.mark.parametrize("service", r.SERVICES)
    def test_ecs_task_role_is_the_services_own(self, service: str) -> None:
        """The ECS task runs as hybrid-orchestrator-<service>, the role deploy/aws/iam/<service>.json is for."""
        template = json.loads((ECS_DIR / f"{service}.json").read_text())
        assert template["taskRoleArn"].endswith(f":role/hybrid-orchestrator-{service}")


class TestPermissions:
    def test_only_the_requester_may_configure_anything(self) -> None:
        """configure (declare/delete) is granted on reply queues to the gateway and to nobody else."""
        for service in r.SERVICES:
            configure = p.rabbitmq_permissions(service, "ho")["configure"]
            assert (configure != p.NOTHING) == (service == r.GATEWAY)
            assert re.fullmatch(configure, "ho.router") is None

    @pytest.mark.parametrize("service", r.SERVICES)
    def test_each_user_reads_only_its_own_queue(self, service: str) -> None:
        """read matches the service's own queues, one per lane (if it consumes), and no other service's queue;
        DLQs only for the gateway, whose admin API lists and replays dead letters."""
        read = p.rabbitmq_permissions(service, "ho")["read"]
        for queue in {*r.SERVICES, *r.QUEUES}:
            own = r.service_of(queue) == service and service != r.GATEWAY
            assert (re.fullmatch(read, f"ho.{queue}") is not None) == own, queue
            dlq_readable = re.fullmatch(read, f"ho.{queue}.dlq") is not None
            assert dlq_readable == (service == r.GATEWAY and queue in p.consuming_services())

    @pytest.mark.parametrize("service", r.SERVICES)
    def test_iam_policies_are_valid_and_never_wildcard_message_actions(self, service: str) -> None:
        """Each policy passes IAM's document validation (moto's port of it); receive and send are scoped."""
        policy = json.loads((IAM / f"{service}.json").read_text())
        IAMPolicyDocumentValidator(json.dumps(policy)).validate()
        for statement in policy["Statement"]:
            resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            if "sqs:ReceiveMessage" in statement["Action"]:
                dead_letter_queues = [f"arn:aws:sqs:*:*:ho-{q.replace('.', '-')}-dlq" for q in p.consuming_services()]
                assert resources in (
                    [f"arn:aws:sqs:*:*:ho-{q.replace('.', '-')}" for q in r.queues_of(service)],
                    ["arn:aws:sqs:*:*:ho-reply-*"],
                    *([dead_letter_queues] if service == r.GATEWAY else []),
                ), statement
            assert "sqs:*" not in statement["Action"]
