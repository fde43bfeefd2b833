"""The Kubernetes manifests as the tests see them: the base and each overlay rendered once per session."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.deploy.kustomize import Resource, load_documents, pod_spec, render
from tests.deploy.support import K8S_BASE, K8S_DIR, K8S_OVERLAYS

# What the tests render: the base and every overlay folder, by a short name.
TARGETS: dict[str, Path] = {"base": K8S_BASE, **{path.name: path for path in K8S_OVERLAYS}}


@functools.cache
def _rendered(name: str) -> tuple[Resource, ...]:
    return tuple(render(TARGETS[name]))


def rendered(name: str) -> list[Resource]:
    """The resources of target `name` (a shared, cached render: do not modify them)."""
    return list(_rendered(name))


def find(resources: list[Resource], kind: str, name: str | None = None) -> list[Resource]:
    """The resources of `kind` (and `name`, when given)."""
    return [r for r in resources if r["kind"] == kind and (name is None or r["metadata"]["name"] == name)]


def one(resources: list[Resource], kind: str, name: str) -> Resource:
    """The single resource of `kind` named `name`; AssertionError when there is not exactly one."""
    found = find(resources, kind, name)
    assert len(found) == 1, f"expected one {kind} {name!r}, found {len(found)}"
    return found[0]


def containers(resource: Resource) -> Iterator[dict[str, Any]]:
    """Every container (init containers included) of a workload resource."""
    spec = pod_spec(resource)
    if spec is not None:
        yield from spec.get("initContainers", [])
        yield from spec.get("containers", [])


def workloads(resources: list[Resource]) -> list[Resource]:
    """The resources that run pods (Deployments, Jobs, CronJobs)."""
    return [r for r in resources if pod_spec(r) is not None]


def manifest_files() -> list[Path]:
    """Every YAML file under deploy/k8s except the kustomization files."""
    return sorted(p for p in K8S_DIR.rglob("*.yaml") if p.name != "kustomization.yaml")


def referenced_files() -> set[Path]:
    """The files some kustomization lists in its resources."""
    files: set[Path] = set()
    for kustomization in K8S_DIR.rglob("kustomization.yaml"):
        for entry in load_documents(kustomization)[0].get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                files.add(path)
    return files
