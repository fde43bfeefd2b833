"""A small kustomize renderer for the tests: the subset of kustomize that deploy/k8s uses, and no more.

The kustomize binary is not available where the suite runs, so the overlays are rendered here to validate
what `kubectl apply -k` would send. Supported kustomization fields: `resources` (YAML files, or folders
holding a kustomization.yaml, rendered recursively), `patches` given inline as JSON 6902 operations with a
`target` (kind, name and/or an equality `labelSelector`), `namespace` and `images`. Anything else raises
KustomizeError instead of being ignored, so a manifest cannot quietly depend on a feature these tests do
not render; and a patch whose target matches nothing, or two resources with the same id, raise too.

Order within one kustomization, as kustomize: resources, then patches, then the namespace and image
transformers, each over everything accumulated at that level (sub-kustomizations included).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

KUSTOMIZATION_FILE = "kustomization.yaml"
SUPPORTED_FIELDS = frozenset({"apiVersion", "kind", "resources", "patches", "namespace", "images"})
TARGET_FIELDS = frozenset({"kind", "name", "labelSelector"})
# Kinds kustomize's namespace transformer leaves alone (cluster-scoped); the rest get the namespace.
CLUSTER_SCOPED_KINDS = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "ClusterTriggerAuthentication"}
)
# Where pod templates sit, per kind, for the images transformer.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}


class KustomizeError(Exception):
    """The kustomization cannot be rendered (or uses a feature this renderer does not support)."""


def load_documents(path: Path) -> list[Resource]:
    """Every non-empty YAML document of `path`."""
    with path.open() as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def render(directory: Path) -> list[Resource]:
    """The resources `kustomize build directory` would produce, in order."""
    kustomization = load_documents(directory / KUSTOMIZATION_FILE)[0]
    unknown = set(kustomization) - SUPPORTED_FIELDS
    if unknown:
        raise KustomizeError(f"{directory}: unsupported kustomization fields {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        resources.extend(render(path) if path.is_dir() else copy.deepcopy(load_documents(path)))
    for patch in kustomization.get("patches", []):
        _apply_patch(directory, resources, patch)
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED_KINDS:
                resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _set_image(resources, image)
    _check_unique(directory, resources)
    return resources


def resource_id(resource: Resource) -> tuple[str, str, str]:
    """(kind, namespace, name): what kustomize (and the API server) tells resources apart by."""
    metadata = resource.get("metadata", {})
    return resource["kind"], metadata.get("namespace", ""), metadata["name"]


def _check_unique(directory: Path, resources: list[Resource]) -> None:
    seen: set[tuple[str, str, str]] = set()
    for resource in resources:
        key = resource_id(resource)
        if key in seen:
            raise KustomizeError(f"{directory}: {key} is defined twice")
        seen.add(key)


def _matches(resource: Resource, target: dict[str, str]) -> bool:
    metadata = resource.get("metadata", {})
    if "kind" in target and resource["kind"] != target["kind"]:
        return False
    if "name" in target and metadata.get("name") != target["name"]:
        return False
    if "labelSelector" in target:
        labels = metadata.get("labels", {})
        for term in target["labelSelector"].split(","):
            key, sep, value = term.partition("=")
            if not sep or "!" in key:
                raise KustomizeError(f"labelSelector {target['labelSelector']!r}: only key=value terms are supported")
            if labels.get(key.strip()) != value.strip():
                return False
    return True


def _apply_patch(directory: Path, resources: list[Resource], patch: dict[str, Any]) -> None:
    if set(patch) != {"target", "patch"}:
        raise KustomizeError(f"{directory}: only inline JSON 6902 patches with a target are supported: {patch}")
    target = patch["target"]
    if set(target) - TARGET_FIELDS:
        raise KustomizeError(f"{directory}: unsupported target fields {sorted(set(target) - TARGET_FIELDS)}")
    operations = yaml.safe_load(patch["patch"])
    if not isinstance(operations, list):
        raise KustomizeError(f"{directory}: a JSON 6902 patch is a list of operations, got {operations!r}")
    matched = [resource for resource in resources if _matches(resource, target)]
    if not matched:
        raise KustomizeError(f"{directory}: patch target {target} matches no resource")
    for resource in matched:
        for operation in operations:
            apply_operation(resource, operation)


def apply_operation(document: Resource, operation: dict[str, Any]) -> None:
    """Apply one JSON Patch (RFC 6902) `add`, `replace` or `remove` operation to `document` in place."""
    op, path = operation.get("op"), operation.get("path", "")
    if op not in {"add", "replace", "remove"}:
        raise KustomizeError(f"unsupported JSON patch operation {op!r}")
    tokens = [token.replace("~1", "/").replace("~0", "~") for token in path.split("/")[1:]]
    if not tokens:
        raise KustomizeError("a JSON patch may not replace the whole document")
    parent: Any = document
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    if isinstance(parent, list):
        if op == "add":
            parent.insert(len(parent) if last == "-" else int(last), operation["value"])
        elif op == "replace":
            parent[int(last)] = operation["value"]
        else:
            del parent[int(last)]
        return
    if op != "add" and last not in parent:
        raise KustomizeError(f"{op} {path}: no such member")
    if op == "remove":
        del parent[last]
    else:
        parent[last] = operation["value"]


def pod_spec(resource: Resource) -> dict[str, Any] | None:
    """The pod spec inside a workload resource, or None for other kinds."""
    path = POD_SPEC_PATHS.get(resource["kind"])
    if path is None:
        return None
    node: Any = resource
    for key in path:
        node = node[key]
    return node  # type: ignore[no-any-return]


def _set_image(resources: list[Resource], image: dict[str, str]) -> None:
    if set(image) - {"name", "newName", "newTag"}:
        raise KustomizeError(f"unsupported images entry {image}")
    for resource in resources:
        spec = pod_spec(resource)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name, _, tag = container["image"].partition(":")
            if name == image["name"]:
                container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag)}"
