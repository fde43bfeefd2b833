"""The Kubernetes manifests say what the issue asks and stay in step with the code: one Deployment per
service running its package, probes on the health port, hardened pods, disruption budgets, autoscaling,
and configuration names that the services actually read."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.routing import GATEWAY, SERVICES
from services.gateway.config import parse_health_urls
from tests.deploy.kustomize import Resource, load_documents, pod_spec
from tests.deploy.manifests import TARGETS, containers, find, one, rendered, workloads
from tests.deploy.support import SECRET_EXAMPLE, package_of, runnable, settings_env_names, unknown_env

CONFIG_MAP = "hybrid-orchestrator-config"
SECRET = "hybrid-orchestrator-secrets"
IRSA_ANNOTATION = "eks.amazonaws.com/role-arn"
OVERLAYS = sorted(name for name in TARGETS if name != "base")


def base() -> list[Resource]:
    return rendered("base")


def config() -> dict[str, str]:
    return dict(one(base(), "ConfigMap", CONFIG_MAP)["data"])


def container_of(deployment: Resource) -> dict[str, Any]:
    spec = pod_spec(deployment)
    assert spec is not None and len(spec["containers"]) == 1
    container: dict[str, Any] = spec["containers"][0]
    return container


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


class TestServiceDeployments:
    def test_deployments_are_exactly_the_services(self) -> None:
        """There is one Deployment per service in contracts.routing.SERVICES, and no other."""
        assert sorted(d["metadata"]["name"] for d in find(base(), "Deployment")) == sorted(SERVICES)

    @pytest.mark.parametrize("service", SERVICES)
    def test_deployment_runs_the_service_package(self, service: str) -> None:
        """The container runs `python -m services.<package>`, which exists and is runnable."""
        command = container_of(one(base(), "Deployment", service))["command"]
        assert command == ["python", "-m", f"services.{package_of(service)}"]
        assert runnable(command[2])

    @pytest.mark.parametrize("service", SERVICES)
    def test_probes_use_the_health_port(self, service: str) -> None:
        """Startup and liveness ask /healthz, readiness /readyz, on the port HEALTH_PORT configures."""
        container = container_of(one(base(), "Deployment", service))
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        assert ports["health"] == int(config()["HEALTH_PORT"])
        for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            assert container[probe]["httpGet"] == {"path": path, "port": "health"}, probe

    @pytest.mark.parametrize("service", SERVICES)
    def test_drain_fits_in_the_grace_period(self, service: str) -> None:
        """The pod's termination grace period is longer than SHUTDOWN_GRACE_S, so draining can finish."""
        spec = pod_spec(one(base(), "Deployment", service))
        assert spec is not None
        assert spec["terminationGracePeriodSeconds"] > float(config()["SHUTDOWN_GRACE_S"])

    @pytest.mark.parametrize("service", SERVICES)
    def test_service_has_its_account_budget_and_service(self, service: str) -> None:
        """Each Deployment has its own ServiceAccount (IRSA placeholder), a PodDisruptionBudget and a
        Service selecting its pods."""
        resources = base()
        deployment = one(resources, "Deployment", service)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        account = one(resources, "ServiceAccount", deployment["spec"]["template"]["spec"]["serviceAccountName"])
        assert account["metadata"]["name"] == service
        assert account["metadata"]["annotations"][IRSA_ANNOTATION].startswith("arn:aws:iam::")
        assert selects(one(resources, "PodDisruptionBudget", service)["spec"]["selector"]["matchLabels"], labels)
        assert selects(one(resources, "Service", service)["spec"]["selector"], labels)

    def test_gateway_scales_on_cpu_and_serves_http(self) -> None:
        """The gateway's replicas belong to its HorizontalPodAutoscaler, and its Service exposes GATEWAY_PORT."""
        resources = base()
        gateway = one(resources, "Deployment", GATEWAY)
        assert "replicas" not in gateway["spec"]
        hpa = one(resources, "HorizontalPodAutoscaler", GATEWAY)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": GATEWAY}
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        env = {e["name"]: e.get("value") for e in container_of(gateway)["env"]}
        ports = {p["name"]: p["containerPort"] for p in container_of(gateway)["ports"]}
        assert ports["http"] == int(env["GATEWAY_PORT"])
        assert {"name": "http", "port": 80, "targetPort": "http"} in one(resources, "Service", GATEWAY)["spec"]["ports"]

    def test_gateway_health_covers_every_other_service(self) -> None:
        """GATEWAY_HEALTH_URLS names each other service at its Service's health port."""
        env = {e["name"]: e.get("value") for e in container_of(one(base(), "Deployment", GATEWAY))["env"]}
        urls = parse_health_urls(env["GATEWAY_HEALTH_URLS"])
        assert sorted(urls) == sorted(s for s in SERVICES if s != GATEWAY)
        for name, url in urls.items():
            service_ports = {p["name"]: p["port"] for p in one(base(), "Service", name)["spec"]["ports"]}
            assert url == f"http://{name}:{service_ports['health']}/readyz"


class TestHardening:
    @pytest.mark.parametrize("target", sorted(TARGETS))
    def test_every_pod_is_locked_down(self, target: str) -> None:
        """Every pod (services, Jobs, CronJobs): non-root, RuntimeDefault seccomp, read-only root, no privilege
        escalation, all capabilities dropped, CPU and memory requests and limits, and the one image."""
        images = set()
        for workload in workloads(rendered(target)):
            spec = pod_spec(workload)
            assert spec is not None
            assert spec["securityContext"]["runAsNonRoot"] is True
            assert spec["securityContext"]["runAsUser"] > 0
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for container in containers(workload):
                context = container["securityContext"]
                assert context["readOnlyRootFilesystem"] is True, workload["metadata"]["name"]
                assert context["allowPrivilegeEscalation"] is False
                assert context["capabilities"] == {"drop": ["ALL"]}
                for bound in ("requests", "limits"):
                    assert set(container["resources"][bound]) >= {"cpu", "memory"}
                images.add(container["image"])
        assert len(images) == 1, images

    def test_ingress_is_denied_by_default(self) -> None:
        """A NetworkPolicy selects every pod of the platform for Ingress and allows nothing by itself."""
        policies = find(base(), "NetworkPolicy")
        deny = [
            p
            for p in policies
            if p["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/part-of": "hybrid-orchestrator"}}
            and p["spec"]["policyTypes"] == ["Ingress"]
            and not p["spec"].get("ingress")
        ]
        assert len(deny) == 1
        gateway_labels = one(base(), "Deployment", GATEWAY)["spec"]["template"]["metadata"]["labels"]
        allowed_gateway_ports = {
            port["port"]
            for p in policies
            if selects(p["spec"]["podSelector"].get("matchLabels", {}), gateway_labels)
            for rule in p["spec"].get("ingress", [])
            for port in rule.get("ports", [])
        }
        gateway_env = {e["name"]: e.get("value") for e in container_of(one(base(), "Deployment", GATEWAY))["env"]}
        assert int(gateway_env["GATEWAY_PORT"]) in allowed_gateway_ports

    def test_secret_example_holds_no_values(self) -> None:
        """secret.example.yaml only has placeholders (CHANGE_ME), never a value someone could deploy."""
        secret = load_documents(SECRET_EXAMPLE)[0]
        assert secret["metadata"]["name"] == SECRET
        assert all("CHANGE_ME" in value for value in secret["stringData"].values())


class TestConfigurationDrift:
    @pytest.mark.parametrize("service", SERVICES)
    def test_env_names_are_settings_the_service_reads(self, service: str) -> None:
        """Every variable a Deployment sets is one of its service's settings."""
        names = [e["name"] for e in container_of(one(base(), "Deployment", service))["env"]]
        assert unknown_env(names, settings_env_names(service)) == []

    def test_config_map_keys_are_read_by_some_service(self) -> None:
        """Each key of the shared ConfigMap is read by at least one service."""
        known = frozenset().union(*(settings_env_names(s) for s in SERVICES))
        assert unknown_env(list(config()), known) == []

    @pytest.mark.parametrize("target", sorted(TARGETS))
    def test_references_resolve(self, target: str) -> None:
        """Secret references name keys of the Secret example; ConfigMap references name the rendered
        ConfigMap and its keys; ServiceAccounts exist."""
        resources = rendered(target)
        secret_keys = set(load_documents(SECRET_EXAMPLE)[0]["stringData"])
        config_keys = set(one(resources, "ConfigMap", CONFIG_MAP)["data"])
        for workload in workloads(resources):
            spec = pod_spec(workload)
            assert spec is not None
            one(resources, "ServiceAccount", spec["serviceAccountName"])
            for container in containers(workload):
                for source in container.get("envFrom", []):
                    assert source == {"configMapRef": {"name": CONFIG_MAP}}
                for variable in container.get("env", []):
                    reference = variable.get("valueFrom", {})
                    if "secretKeyRef" in reference:
                        assert reference["secretKeyRef"]["name"] == SECRET
                        assert reference["secretKeyRef"]["key"] in secret_keys, variable
                    if "configMapKeyRef" in reference:
                        assert reference["configMapKeyRef"]["name"] == CONFIG_MAP
                        assert reference["configMapKeyRef"]["key"] in config_keys, variable

    @pytest.mark.parametrize("target", sorted(TARGETS))
    def test_every_command_is_runnable(self, target: str) -> None:
        """Every container command is `python -m <module>` for a module that exists and runs."""
        for workload in workloads(rendered(target)):
            for container in containers(workload):
                command = container["command"]
                assert command[:2] == ["python", "-m"] and runnable(command[2]), command

    def test_migration_job_runs_migrate_all_with_the_database(self) -> None:
        """The base's Job is the one-shot migrate_all, given DATABASE_URL."""
        job = one(base(), "Job", "hybrid-orchestrator-migrate")
        container = next(containers(job))
        assert container["command"] == ["python", "-m", "libs.storage.migrate_all"]
        assert "DATABASE_URL" in {e["name"] for e in container["env"]}

    @pytest.mark.parametrize("overlay", OVERLAYS)
    def test_overlays_put_everything_in_their_namespace(self, overlay: str) -> None:
        """In an overlay every namespaced resource lands in the namespace the overlay creates."""
        resources = rendered(overlay)
        namespaces = find(resources, "Namespace")
        assert len(namespaces) == 1
        name = namespaces[0]["metadata"]["name"]
        for resource in resources:
            if resource["kind"] != "Namespace":
                assert resource["metadata"].get("namespace") == name, resource["metadata"]["name"]
