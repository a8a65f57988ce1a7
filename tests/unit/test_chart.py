"""The Helm chart, rendered and linted by the real Helm (built from its Go module, cached).

Every documented values combination lives in ``charts/ferry/ci/*.yaml`` (chart-testing's layout);
each is linted and rendered here, and applied to the real apiserver in tests/integration/test_helm.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ferry.generate import rbac
from ferry.config import OperatorConfig
from ferry_dev.tools import CHART_DIR, KUBE_VERSION_FLAG, helm, render_chart

ROOT = CHART_DIR.parents[1]
VALUES_FILES = sorted((CHART_DIR / "ci").glob("*.yaml"))
COMBINATIONS = [None, *VALUES_FILES]
STANDARD_LABELS = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                   "app.kubernetes.io/managed-by", "helm.sh/chart"}


def render(values: Path | None = None, *flags: str) -> list[dict]:
    return render_chart(*(["-f", str(values)] if values else []), *flags)


def by_kind(objects: list[dict], kind: str) -> list[dict]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(objects: list[dict], kind: str) -> dict:
    (found,) = by_kind(objects, kind)
    return found


def container(objects: list[dict]) -> dict:
    (operator,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return operator


def env(objects: list[dict]) -> dict[str, dict]:
    return {var["name"]: var for var in container(objects)["env"]}


CLUSTER_SCOPED = ("ClusterRole", "ClusterRoleBinding", "ValidatingAdmissionPolicy",
                  "ValidatingAdmissionPolicyBinding")


def operator_cluster_role(objects: list[dict]) -> dict:
    (found,) = [r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"] == "ferry"]
    return found


def name_of(values: Path | None) -> str:
    return values.stem if values else "default"


@pytest.mark.parametrize("values", COMBINATIONS, ids=name_of)
def test_lint_strict(values):
    args = ["lint", "--strict", str(CHART_DIR), *KUBE_VERSION_FLAG]
    result = helm(*args, *(["-f", str(values)] if values else []), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("values", COMBINATIONS, ids=name_of)
def test_every_combination_renders_labelled_objects(values):
    objects = render(values)
    assert by_kind(objects, "Deployment")
    for obj in objects:
        labels = obj["metadata"].get("labels", {})
        assert labels.keys() >= STANDARD_LABELS, f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] not in CLUSTER_SCOPED:
            assert obj["metadata"]["namespace"], obj["kind"]


def test_chart_crds_are_the_generated_crds():
    chart_crds = {p.name: p.read_text() for p in (CHART_DIR / "crds").glob("*.yaml")}
    repo_crds = {p.name: p.read_text() for p in (ROOT / "crds").glob("ferry.dev_*.yaml")}
    assert chart_crds == repo_crds and len(chart_crds) == 4
    for text in chart_crds.values():
        assert "argocd.argoproj.io/sync-options: Prune=false,ServerSideApply=true" in text
        assert "argocd.argoproj.io/sync-wave: '-2'" in text


def test_default_deployment_runs_two_locked_down_replicas():
    objects = render()
    deployment = one(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    operator = container(objects)
    assert deployment["spec"]["replicas"] == 2
    assert operator["command"] == ["ferry", "operator"]
    assert operator["image"] == "ghcr.io/ferry-dev/ferry:0.1.0"
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    security = operator["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "tmp", "mountPath": "/tmp"} in operator["volumeMounts"]
    assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == {"tmp"}
    assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert operator["resources"]["requests"] and operator["resources"]["limits"]["memory"]
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    service = one(objects, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_every_ferry_variable_is_an_operator_setting():
    """The chart configures the operator only through OperatorConfig's FERRY_* variables."""
    for values in COMBINATIONS:
        names = {name for name in env(render(values)) if name.startswith("FERRY_")}
        unknown = {name for name in names if name[len("FERRY_"):].lower() not in OperatorConfig.model_fields}
        assert not unknown, f"{name_of(values)}: {unknown}"


def test_default_environment_matches_operator_defaults():
    variables = env(render())
    value = {name: var.get("value") for name, var in variables.items()}
    assert value["FERRY_NAMESPACES"] == ""  # every namespace
    assert value["FERRY_LEADER_ELECTION"] == "true"
    assert value["FERRY_LEASE_NAME"] == "ferry"
    assert value["FERRY_METRICS_PORT"] == "8080"
    assert value["FERRY_METRICS_HOST"] == "$(POD_IP)"
    lease = one(render(), "Lease")  # installed with the release, so uninstall removes it
    assert lease["metadata"]["name"] == value["FERRY_LEASE_NAME"]
    assert variables["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    config = OperatorConfig.from_env({k: v for k, v in value.items() if v and "$(" not in v})
    assert config.leader_election and config.lease_name == "ferry" and not config.namespaces


def test_default_rbac_is_the_declared_rules_cluster_wide():
    objects = render()
    cluster_role = operator_cluster_role(objects)
    assert cluster_role["rules"] == rbac.manifest_rules(rbac.CLUSTER_RULES + rbac.WORKLOAD_RULES)
    (leader,) = [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("leader-election")]
    assert leader["metadata"]["namespace"] == "ferry-system"
    assert leader["rules"] == rbac.manifest_rules(rbac.leader_rules("ferry"))
    assert len(by_kind(objects, "Role")) == 1
    bindings = by_kind(objects, "ClusterRoleBinding") + by_kind(objects, "RoleBinding")
    subjects = [binding["subjects"] for binding in bindings]
    assert all(s == [{"kind": "ServiceAccount", "name": "ferry", "namespace": "ferry-system"}]
               for s in subjects)


def test_namespaced_mode_grants_workload_rights_only_in_watched_namespaces():
    objects = render(CHART_DIR / "ci" / "namespaced-values.yaml")
    assert operator_cluster_role(objects)["rules"] == rbac.manifest_rules(
        rbac.CLUSTER_RULES + rbac.NAMESPACE_DISCOVERY_RULES)
    workload = [r for r in by_kind(objects, "Role") if not r["metadata"]["name"].endswith("election")]
    assert {r["metadata"]["namespace"] for r in workload} == {"ml-team", "ml-research"}
    assert all(r["rules"] == rbac.manifest_rules(rbac.WORKLOAD_RULES) for r in workload)
    assert {b["metadata"]["namespace"] for b in by_kind(objects, "RoleBinding")} == {
        "ml-team", "ml-research", "ferry-system"}
    assert env(objects)["FERRY_NAMESPACES"]["value"] == "ml-team,ml-research"


def test_a_namespace_glob_gets_the_workload_rules_cluster_wide():
    """A glob matches namespaces created after the install, which no Role can name in advance."""
    objects = render(None, "--set", "watchNamespaces={ml-team,team-*}")
    assert operator_cluster_role(objects)["rules"] == rbac.manifest_rules(
        rbac.CLUSTER_RULES + rbac.NAMESPACE_DISCOVERY_RULES + rbac.WORKLOAD_RULES)
    assert [r["metadata"]["name"] for r in by_kind(objects, "Role")] == ["ferry-leader-election"]
    assert env(objects)["FERRY_NAMESPACES"]["value"] == "ml-team,team-*"


def test_single_replica_has_no_pdb_and_no_lease():
    objects = render(CHART_DIR / "ci" / "single-replica-values.yaml")
    assert not by_kind(objects, "PodDisruptionBudget")
    assert not [r for r in by_kind(objects, "Role") if r["metadata"]["name"].endswith("election")]
    assert not by_kind(objects, "Lease")
    assert env(objects)["FERRY_LEADER_ELECTION"]["value"] == "false"


def test_existing_service_account_without_rbac():
    objects = render(CHART_DIR / "ci" / "existing-serviceaccount-values.yaml")
    assert not {"ServiceAccount", "ClusterRole", "Role", "RoleBinding"} & {o["kind"] for o in objects}
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "ferry-operator"


def test_monitoring_objects():
    objects = render(CHART_DIR / "ci" / "monitoring-values.yaml")
    monitor = one(objects, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [{"port": "metrics", "path": "/metrics", "interval": "30s"}]
    alerts = {rule["alert"]: rule for rule in one(objects, "PrometheusRule")["spec"]["groups"][0]["rules"]}
    assert set(alerts) == {"FerryReconcileErrors", "FerryRolloutRolledBack", "FerryDriftDetected",
                           "FerryFeaturesStale"}
    assert "{{ $labels.kind }}" in alerts["FerryReconcileErrors"]["annotations"]["summary"]
    assert alerts["FerryDriftDetected"]["expr"] == (
        "max by (namespace, inferenceservice) (ferry_drift_detected) == 1")
    policy = one(objects, "NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"][0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]


def test_external_services_configuration():
    objects = render(CHART_DIR / "ci" / "external-services-values.yaml")
    variables = {name: var.get("value") for name, var in env(objects).items()}
    assert variables["FERRY_MLFLOW_URI"] == "http://mlflow.mlflow.svc:5000"
    assert variables["FERRY_S3_ENDPOINT"] == "http://minio.storage.svc:9000"
    assert variables["FERRY_S3_BUCKET"] == "ml-features"
    assert variables["FERRY_DEFAULT_OBJECT_STORE_SECRET"] == "ferry-s3"
    assert variables["FERRY_PROMETHEUS_URL"] == "http://prometheus-operated.monitoring.svc:9090"
    assert variables["FERRY_LOG_LEVEL"] == "DEBUG"
    assert container(objects)["envFrom"] == [{"secretRef": {"name": "ferry-s3"}}]
    assert container(objects)["image"] == "ghcr.io/ferry-dev/ferry:0.1.0@sha256:" + "0" * 64


@pytest.mark.parametrize("flag, message", [
    ("replicaCount=two", "at '/replicaCount': got string, want integer"),
    ("logLevel=LOUD", "at '/logLevel'"),
    ("metrics.port=80", "at '/metrics/port'"),
    ("watchNamespaces[0]=Team_A", "at '/watchNamespaces/0'"),
    ("replicas=2", "additional properties 'replicas' not allowed"),
])
def test_schema_rejects_bad_values_with_a_clear_message(flag, message):
    with pytest.raises(subprocess.CalledProcessError) as failure:
        render(None, "--set", flag)
    assert "values don't meet the specifications of the schema" in failure.value.stderr
    assert message in failure.value.stderr


def test_release_name_and_overrides_flow_into_names():
    objects = render_chart("--set", "fullnameOverride=mlops", release="prod")
    assert one(objects, "Deployment")["metadata"]["name"] == "mlops"
    assert env(objects)["FERRY_LEASE_NAME"]["value"] == "mlops"
    objects = render_chart(release="prod")
    assert one(objects, "Deployment")["metadata"]["name"] == "prod-ferry"
    assert one(objects, "Deployment")["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": "ferry", "app.kubernetes.io/instance": "prod"}
