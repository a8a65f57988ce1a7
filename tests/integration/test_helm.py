"""The chart with the real Helm on the real control plane: server-side dry-run of every values
combination, install → the operator runs from Ferry's image on the real node under the chart's
RBAC (its ServiceAccount token, Pod Security ``restricted``) and reconciles an example → upgrade →
uninstall leaves nothing of the operator (CRDs stay). A missing verb shows up as a 403 in its log,
read with ``kubectl logs``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ferry_dev.services import ACCESS_KEY, BUCKET, REGION, SECRET_KEY
from ferry_dev.tools import CHART_DIR, helm, render_chart
from support.cluster import FORBIDDEN, create_namespace
from support.objects import reconciled
from support.waiting import wait_for

ROOT = CHART_DIR.parents[1]
VALUES_FILES = sorted((CHART_DIR / "ci").glob("*.yaml"))
RELEASE = "ferry-it"
# Stand-ins for the Prometheus Operator's CRDs (not installable offline): they make the API know
# ServiceMonitor/PrometheusRule so the dry-run checks everything else about those objects.
MONITORING_KINDS = (("ServiceMonitor", "servicemonitors"), ("PrometheusRule", "prometheusrules"))


def stand_in_crd(kind: str, plural: str) -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.monitoring.coreos.com"},
        "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                 "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                 "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                     "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


@pytest.fixture(scope="module")
def monitoring_crds(cluster):
    crds = [stand_in_crd(kind, plural) for kind, plural in MONITORING_KINDS]
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(crds))
    for _, plural in MONITORING_KINDS:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{plural}.monitoring.coreos.com",
                        "--timeout=30s")
    yield
    for _, plural in MONITORING_KINDS:
        cluster.kubectl("delete", "crd", f"{plural}.monitoring.coreos.com", "--wait=false", check=False)


@pytest.fixture(scope="module")
def s3(services):
    """The session's SeaweedFS, which listens on the node IP the operator pods reach."""
    return services.endpoints["s3"]


def helm_on(cluster, *args: str, check: bool = True):
    result = helm(*args, kubeconfig=cluster.kubeconfig, check=False)
    if check and result.returncode != 0:
        namespace = args[args.index("-n") + 1] if "-n" in args else "default"
        pods = cluster.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        raise AssertionError(f"helm {args[0]} failed: {result.stderr}\n{pods}\n"
                             f"{operator_logs(cluster, namespace)[-4000:]}")
    return result


@pytest.mark.parametrize("values", [None, *VALUES_FILES], ids=lambda v: v.stem if v else "default")
def test_every_rendered_object_passes_a_server_side_dry_run(cluster, monitoring_crds, values):
    namespace = create_namespace(cluster, "helm")
    flags = ["-f", str(values)] if values else []
    if values and yaml.safe_load(values.read_text()).get("watchNamespaces"):
        watched = [create_namespace(cluster, "helm-w") for _ in range(2)]
        flags += ["--set", "watchNamespaces={" + ",".join(watched) + "}"]
    objects = render_chart(*flags, "--include-crds", release=RELEASE, namespace=namespace)
    result = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--dry-run=server",
                             "-f", "-", input=yaml.safe_dump_all(objects), check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("(server dry run)") == len(objects)
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")


def test_a_bad_value_is_rejected_before_anything_is_installed(cluster):
    namespace = create_namespace(cluster, "helm")
    result = helm_on(cluster, "install", "bad", str(CHART_DIR), "-n", namespace,
                     "--set", "replicaCount=two", check=False)
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert "at '/replicaCount': got string, want integer" in result.stderr
    assert json.loads(helm_on(cluster, "list", "-n", namespace, "-o", "json").stdout) == []


def operator_pods(cluster, namespace: str) -> list[dict]:
    out = cluster.kubectl("get", "pods", "-n", namespace, "-l", f"app.kubernetes.io/instance={RELEASE}",
                          "-o", "json").stdout
    return json.loads(out)["items"]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def operator_logs(cluster, namespace: str) -> str:
    """The current operator pods' output, through ``kubectl logs`` (the kubelet serves it)."""
    return "\n".join(
        cluster.kubectl("logs", "-n", namespace, pod["metadata"]["name"], "-c", "operator",
                        check=False).stdout
        for pod in operator_pods(cluster, namespace))


def get_json(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)


@pytest.fixture
def release_namespace(cluster):
    """The release's namespace; the release is uninstalled however the test ends, because a
    cluster-wide operator left running would reconcile every later test's objects too."""
    namespace = create_namespace(cluster, "helm")
    yield namespace
    if json.loads(helm_on(cluster, "list", "-n", namespace, "-o", "json").stdout):
        helm_on(cluster, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s",
                check=False)


def test_install_reconcile_upgrade_uninstall(cluster, s3, release_namespace):
    namespace = release_namespace
    watched = create_namespace(cluster, "helm-w")
    # The S3 credentials reach the operator as the chart documents it: a Secret loaded with envFrom.
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "ferry-s3", "namespace": namespace},
              "stringData": {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                             "AWS_DEFAULT_REGION": REGION}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))
    repository, tag = cluster.image.rsplit(":", 1)
    values = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        "watchNamespaces": [watched],
        "s3": {"endpoint": s3, "bucket": BUCKET, "credentialsSecret": "ferry-s3"},
        "leaderElection": {"leaseDurationSeconds": 6, "renewDeadlineSeconds": 4, "retryPeriodSeconds": 1},
        "resyncSeconds": 10,
        "logFormat": "text",
    }
    values_file = Path(cluster.state_dir) / "helm-it-values.yaml"
    values_file.write_text(yaml.safe_dump(values))

    install = helm_on(cluster, "install", RELEASE, str(CHART_DIR), "-n", namespace, "-f", str(values_file),
                      "--wait", "--timeout", "180s")
    assert "STATUS: deployed" in install.stdout
    assert f"kubectl -n {namespace} rollout status deploy/{RELEASE}" in install.stdout  # NOTES.txt
    pods = operator_pods(cluster, namespace)
    assert len(pods) == 2 and all(ready(pod) for pod in pods)  # the /readyz probe passed
    assert {pod["spec"]["nodeName"] for pod in pods} == {cluster.local.node.name}
    assert {pod["spec"]["containers"][0]["image"] for pod in pods} == {cluster.image}
    holder = wait_for(lambda: get_json(cluster, "lease", RELEASE, "-n", namespace)["spec"].get(
        "holderIdentity"), timeout=60, message="a leader")
    assert holder in {pod["metadata"]["name"] for pod in pods}

    # Namespaced mode: the operator reconciles an example under the chart's RBAC — a scheduled
    # FeaturePipeline gets Accepted, its CronJob (server-side apply: create + patch) and Events.
    example = str(ROOT / "manifests/examples/fraud/features-v1.yaml")
    cluster.kubectl("apply", "-n", watched, "-f", example)
    expect_reconciled(cluster, namespace, watched)

    # Upgrade to the default, cluster-wide mode (ClusterRole with the workload rules) and reconcile
    # in a namespace the operator was not told about.
    upgrade = helm_on(cluster, "upgrade", RELEASE, str(CHART_DIR), "-n", namespace, "-f", str(values_file),
                      "--set", "logLevel=DEBUG", "--set-json", "watchNamespaces=[]",
                      "--wait", "--timeout", "180s")
    assert "REVISION: 2" in upgrade.stdout
    deployment = get_json(cluster, "deployment", RELEASE, "-n", namespace)
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FERRY_LOG_LEVEL"] == "DEBUG" and not env["FERRY_NAMESPACES"]  # "" is stored as absent
    wait_for(lambda: deployment_rolled_out(cluster, namespace), timeout=180, message="the upgrade rollout")
    assert not get_json(cluster, "rolebindings", "-n", watched)["items"]  # per-namespace RBAC gone
    anywhere = create_namespace(cluster, "helm-c")
    cluster.kubectl("apply", "-n", anywhere, "-f", example)
    expect_reconciled(cluster, namespace, anywhere)

    # Ferry objects go first, while the operator can still remove its finalizer.
    for where in (watched, anywhere):
        cluster.kubectl("delete", "-n", where, "featurepipeline.ferry.dev/transactions-v1", "--timeout=60s")
    helm_on(cluster, "uninstall", RELEASE, "-n", namespace, "--wait", "--timeout", "120s")
    wait_for(lambda: not operator_pods(cluster, namespace), timeout=90, message="the operator pods to go")
    for kind in ("deployments", "replicasets", "serviceaccounts", "roles", "rolebindings", "services",
                 "poddisruptionbudgets", "leases", "configmaps", "secrets"):
        left = [item["metadata"]["name"] for item in get_json(cluster, kind, "-n", namespace)["items"]
                if item["metadata"]["name"] not in ("default", "kube-root-ca.crt", "ferry-s3")]
        assert left == [], f"{kind} left behind: {left}"
    for kind in ("clusterroles", "clusterrolebindings"):
        assert not get_json(cluster, kind, "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    crds = {item["metadata"]["name"] for item in get_json(cluster, "crds")["items"]}
    assert "featurepipelines.ferry.dev" in crds  # Helm keeps CRDs
    cluster.kubectl("delete", "namespace", namespace, watched, anywhere, "--wait=false")


def expect_reconciled(cluster, operator_namespace: str, namespace: str) -> None:
    """The example in ``namespace`` is Accepted and has its CronJob, with no 403 in the logs."""
    try:
        wait_for(lambda: reconciled(get_json(cluster, "featurepipeline.ferry.dev", "transactions-v1",
                                             "-n", namespace)), timeout=90, message="Accepted=True")
        wait_for(lambda: get_json(cluster, "cronjobs", "-n", namespace)["items"], timeout=60,
                 message="the pipeline's CronJob")
    except AssertionError as error:
        raise AssertionError(f"{error}\n{operator_logs(cluster, operator_namespace)[-6000:]}") from None
    logs = operator_logs(cluster, operator_namespace)
    # A cluster-wide operator also sees other tests' namespaces; writes refused there because
    # the namespace is being deleted are 403s too, but no RBAC gap: only RBAC's own refusal
    # ("User ... cannot <verb> resource") counts.
    denied = [line for line in logs.splitlines() if FORBIDDEN.search(line)]
    assert logs and not denied, "\n".join(denied[-10:])[-3000:]


def deployment_rolled_out(cluster, namespace: str) -> bool:
    deployment = get_json(cluster, "deployment", RELEASE, "-n", namespace)
    status = deployment.get("status", {})
    return (status.get("observedGeneration") == deployment["metadata"]["generation"]
            and status.get("updatedReplicas") == status.get("replicas") == status.get("readyReplicas") == 2)
