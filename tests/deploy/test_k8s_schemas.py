"""Every Kubernetes manifest validates: built-in kinds against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors), KEDA kinds against the subset schema of keda_schema.py.

The base and every overlay are rendered (tests/deploy/kustomize.py, standing in for the kustomize binary,
which is not installed here) and validated as `kubectl apply -k` would send them, for the oldest and the
newest Kubernetes minor version the manifests support.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from libs.bus.constants import queue_name
from libs.bus.sqs_config import physical_name
from tests.deploy.keda_schema import SCHEMAS, TRIGGER_PARAMETERS
from tests.deploy.kustomize import Resource, load_documents
from tests.deploy.manifests import TARGETS, find, manifest_files, one, referenced_files, rendered
from tests.deploy.support import SECRET_EXAMPLE, consumers

# The manifests use autoscaling/v2, policy/v1 and batch/v1 CronJobs: 1.30 is the oldest minor still
# supported by the major providers; 1.37 is the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.30", "1.37")
KEDA_OVERLAYS = sorted(name for name in TARGETS if name.endswith("-keda"))


def validate(resource: Resource, version: str) -> None:
    """Raise when `resource` is invalid for Kubernetes `version` (KEDA kinds: against our subset schema)."""
    if resource["kind"] in SCHEMAS:
        jsonschema.Draft7Validator(SCHEMAS[resource["kind"]]).validate(resource)
        return
    kubernetes_validate.validate(resource, version, strict=True)


def problems(resources: list[Resource], version: str) -> list[str]:
    found = []
    for resource in resources:
        try:
            validate(resource, version)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            path = "/".join(map(str, exc.absolute_path))
            found.append(f"{resource['kind']}/{resource['metadata']['name']} {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            found.append(exc.message)
    return found


class TestKubernetesSchemas:
    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    @pytest.mark.parametrize("target", sorted(TARGETS))
    def test_rendered_target_validates(self, target: str, version: str) -> None:
        """Every resource of the base and of each rendered overlay is valid for the Kubernetes version."""
        resources = rendered(target)
        assert resources
        assert problems(resources, version) == []

    @pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
    def test_secret_example_validates(self, version: str) -> None:
        """secret.example.yaml (not part of any kustomization) is a valid Secret too."""
        assert problems(load_documents(SECRET_EXAMPLE), version) == []

    def test_every_manifest_file_is_rendered_or_the_secret_example(self) -> None:
        """No YAML file under deploy/k8s escapes validation by not being listed in a kustomization."""
        orphans = [p for p in manifest_files() if p.resolve() not in referenced_files() and p != SECRET_EXAMPLE]
        assert orphans == []

    def test_strict_validation_rejects_a_misspelt_field(self) -> None:
        """A typo deep in a pod template is an error (so a pass above means something)."""
        deployment = copy.deepcopy(one(rendered("base"), "Deployment", "router"))
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        container["securityContext"]["readOnlyRootFilesytem"] = container["securityContext"].pop(
            "readOnlyRootFilesystem"
        )
        assert problems([deployment], KUBERNETES_VERSIONS[-1])

    def test_unknown_kinds_are_reported(self) -> None:
        """A kind with no schema at all is a problem, not a silent pass."""
        unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        assert problems([unknown], KUBERNETES_VERSIONS[-1])


class TestKedaObjects:
    def test_base_and_plain_overlays_need_no_keda(self) -> None:
        """KEDA objects live only in the -keda overlays, so the rest applies without the CRDs."""
        for target in TARGETS:
            if target not in KEDA_OVERLAYS:
                assert not [r for r in rendered(target) if r["apiVersion"].startswith("keda.sh/")], target

    def test_subset_schema_rejects_a_misspelt_field(self) -> None:
        """The KEDA subset schema is strict (an unknown spec field fails)."""
        scaled = copy.deepcopy(find(rendered(KEDA_OVERLAYS[0]), "ScaledObject")[0])
        scaled["spec"]["minReplicas"] = scaled["spec"].pop("minReplicaCount")
        assert problems([scaled], KUBERNETES_VERSIONS[-1])

    @pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
    def test_every_consumer_scales_on_its_own_queue(self, overlay: str) -> None:
        """One ScaledObject per bus consumer, targeting its Deployment and watching its queue's name."""
        resources = rendered(overlay)
        namespace = one(resources, "ConfigMap", "hybrid-orchestrator-config")["data"]["BUS_NAMESPACE"]
        scaled = {r["metadata"]["name"]: r for r in find(resources, "ScaledObject")}
        assert sorted(scaled) == sorted(consumers())
        for service, scaled_object in scaled.items():
            assert scaled_object["spec"]["scaleTargetRef"]["name"] == service
            one(resources, "Deployment", service)
            for trigger in scaled_object["spec"]["triggers"]:
                logical = queue_name(namespace, service)
                if trigger["type"] == "rabbitmq":
                    assert trigger["metadata"]["queueName"] == logical
                else:
                    assert trigger["metadata"]["queueURL"].rsplit("/", 1)[1] == physical_name(logical)

    @pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
    def test_trigger_parameters_are_known_and_complete(self, overlay: str) -> None:
        """Each trigger has its scaler's required parameters and no parameter the scaler does not know."""
        for scaled_object in find(rendered(overlay), "ScaledObject"):
            for trigger in scaled_object["spec"]["triggers"]:
                parameters = TRIGGER_PARAMETERS[trigger["type"]]
                given = set(trigger["metadata"])
                assert parameters["required"] <= given, trigger
                assert given <= parameters["allowed"], trigger

    @pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
    def test_authentication_references_resolve(self, overlay: str) -> None:
        """authenticationRef names a TriggerAuthentication of the overlay; its secret keys exist."""
        resources = rendered(overlay)
        secret_keys = set(load_documents(SECRET_EXAMPLE)[0]["stringData"])
        for scaled_object in find(resources, "ScaledObject"):
            for trigger in scaled_object["spec"]["triggers"]:
                authentication = one(resources, "TriggerAuthentication", trigger["authenticationRef"]["name"])
                for reference in authentication["spec"].get("secretTargetRef", []):
                    assert reference["name"] == "hybrid-orchestrator-secrets"
                    assert reference["key"] in secret_keys

    @pytest.mark.parametrize("overlay", KEDA_OVERLAYS)
    def test_keda_owns_the_replica_count(self, overlay: str) -> None:
        """A KEDA-scaled Deployment has no fixed replicas and no other HorizontalPodAutoscaler."""
        resources = rendered(overlay)
        hpa_targets = {r["spec"]["scaleTargetRef"]["name"] for r in find(resources, "HorizontalPodAutoscaler")}
        for scaled_object in find(resources, "ScaledObject"):
            target = scaled_object["spec"]["scaleTargetRef"]["name"]
            assert "replicas" not in one(resources, "Deployment", target)["spec"]
            assert target not in hpa_targets
            spec: dict[str, Any] = scaled_object["spec"]
            assert spec["minReplicaCount"] <= spec["maxReplicaCount"]
