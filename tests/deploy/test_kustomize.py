"""The test-side kustomize renderer does what kustomize does for the features deploy/k8s uses, and refuses
the rest (so the manifest tests cannot pass on a render that kustomize would produce differently)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.deploy.kustomize import KustomizeError, apply_operation, render

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "app", "labels": {"tier": "worker"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"a": "b"}},
        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "img:1"}]}},
    },
}
NAMESPACE = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns"}}


def write(directory: Path, kustomization: dict[str, object], files: dict[str, list[object]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    for name, documents in files.items():
        (directory / name).write_text(yaml.safe_dump_all(documents))
    return directory


class TestRender:
    def test_overlay_patches_namespaces_and_retags(self, tmp_path: Path) -> None:
        """An overlay's JSON patches, namespace and images apply to the base's resources, not to its
        cluster-scoped Namespace's metadata."""
        write(tmp_path / "base", {"resources": ["app.yaml"]}, {"app.yaml": [DEPLOYMENT]})
        overlay = write(
            tmp_path / "overlay",
            {
                "namespace": "ns",
                "resources": ["ns.yaml", "../base"],
                "images": [{"name": "img", "newName": "registry/img", "newTag": "2"}],
                "patches": [
                    {
                        "target": {"kind": "Deployment", "labelSelector": "tier=worker"},
                        "patch": "- {op: remove, path: /spec/replicas}\n"
                        "- {op: add, path: /spec/template/spec/containers/0/args, value: [x]}",
                    }
                ],
            },
            {"ns.yaml": [NAMESPACE]},
        )
        namespace, deployment = render(overlay)
        assert "namespace" not in namespace["metadata"]
        assert deployment["metadata"]["namespace"] == "ns"
        assert "replicas" not in deployment["spec"]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container == {"name": "c", "image": "registry/img:2", "args": ["x"]}

    def test_sub_kustomization_namespace_does_not_reach_the_parents_own_resources(self, tmp_path: Path) -> None:
        """A namespace set in a sub-kustomization does not apply to what the parent adds itself."""
        write(tmp_path / "inner", {"namespace": "ns", "resources": ["app.yaml"]}, {"app.yaml": [DEPLOYMENT]})
        other = {**DEPLOYMENT, "metadata": {"name": "other"}}
        outer = write(tmp_path / "outer", {"resources": ["../inner", "other.yaml"]}, {"other.yaml": [other]})
        inner_app, outer_app = render(outer)
        assert inner_app["metadata"]["namespace"] == "ns"
        assert "namespace" not in outer_app["metadata"]

    @pytest.mark.parametrize(
        ("kustomization", "message"),
        [
            ({"resources": ["app.yaml"], "commonLabels": {"a": "b"}}, "unsupported kustomization fields"),
            ({"resources": ["app.yaml"], "patches": [{"path": "p.yaml"}]}, "only inline JSON 6902"),
            (
                {"resources": ["app.yaml"], "patches": [{"target": {"name": "nope"}, "patch": "[]"}]},
                "matches no resource",
            ),
            ({"resources": ["app.yaml", "app.yaml"]}, "defined twice"),
        ],
    )
    def test_unsupported_or_broken_kustomizations_raise(
        self, tmp_path: Path, kustomization: dict[str, object], message: str
    ) -> None:
        """Unknown fields, patch files, patches matching nothing and duplicate resources are errors."""
        directory = write(tmp_path, kustomization, {"app.yaml": [DEPLOYMENT]})
        with pytest.raises(KustomizeError, match=message):
            render(directory)


class TestJsonPatch:
    def test_add_replace_remove(self) -> None:
        """add appends with "-", replace and remove need an existing member, "~1" escapes "/"."""
        document: dict[str, object] = {"a": {"b/c": 1}, "list": [1]}
        apply_operation(document, {"op": "add", "path": "/list/-", "value": 2})
        apply_operation(document, {"op": "replace", "path": "/a/b~1c", "value": 3})
        apply_operation(document, {"op": "remove", "path": "/list/0"})
        assert document == {"a": {"b/c": 3}, "list": [2]}
        with pytest.raises(KustomizeError, match="no such member"):
            apply_operation(document, {"op": "replace", "path": "/missing", "value": 1})
        with pytest.raises(KustomizeError, match="unsupported"):
            apply_operation(document, {"op": "move", "from": "/a", "path": "/b"})
