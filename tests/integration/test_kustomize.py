"""``kubectl apply -k manifests/base`` installs the same operator as the chart with default values,
and the namespaced overlay the same as the chart with ``watchNamespaces``; both pass a server-side
dry-run on the real apiserver. Rendering uses the kustomize built into our kubectl."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ferry_dev.tools import render_chart

ROOT = Path(__file__).resolve().parents[2]
# Labels that name the tool that installed an object, not the operator.
TOOL_LABELS = {"helm.sh/chart", "app.kubernetes.io/managed-by"}
# Kinds whose whole content matters (for the rest: metadata + spec).
COMPARED_KINDS = {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
                  "RoleBinding", "Service", "PodDisruptionBudget", "Lease",
                  "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def kustomize(cluster, path: str) -> list[dict]:
    out = cluster.kubectl("kustomize", str(ROOT / path)).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def comparable(objects: list[dict]) -> dict[tuple, dict]:
    """(kind, namespace, name) -> the object without tool-specific labels."""
    result = {}
    for obj in objects:
        if obj["kind"] not in COMPARED_KINDS:
            continue
        metadata = obj["metadata"]
        labels = {k: v for k, v in metadata.get("labels", {}).items() if k not in TOOL_LABELS}
        body = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion")}
        result[obj["kind"], metadata.get("namespace"), metadata["name"]] = {
            "apiVersion": obj["apiVersion"], "labels": labels, **body}
    return result


def assert_same_operator(kustomized: list[dict], charted: list[dict]) -> None:
    mine, theirs = comparable(kustomized), comparable(charted)
    assert sorted(mine) == sorted(theirs)
    for key in mine:
        assert mine[key] == theirs[key], key


def test_base_is_the_chart_with_default_values(cluster):
    base = kustomize(cluster, "manifests/base")
    chart = render_chart(release="ferry", namespace="ferry-system")
    assert_same_operator(base, chart)
    crds = {obj["metadata"]["name"] for obj in base if obj["kind"] == "CustomResourceDefinition"}
    assert crds == {f"{p}.ferry.dev" for p in ("featurepipelines", "trainingruns", "modelversions",
                                               "inferenceservices")}


def test_namespaced_overlay_is_the_chart_in_namespaced_mode(cluster):
    overlay = kustomize(cluster, "manifests/overlays/namespaced")
    chart = render_chart("--set", "watchNamespaces={ml-team}", release="ferry",
                         namespace="ferry-system")
    assert_same_operator(overlay, chart)


@pytest.mark.parametrize("path, namespaces", [
    ("manifests/base", ["ferry-system"]),
    ("manifests/overlays/namespaced", ["ferry-system", "ml-team"]),
])
def test_server_side_dry_run(cluster, path, namespaces):
    for namespace in namespaces:  # the dry-run does not create the Namespace object it contains
        if cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0:
            cluster.kubectl("create", "namespace", namespace)
    result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                             "-k", str(ROOT / path), check=False)
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/ferry serverside-applied (server dry run)" in result.stdout
