"""The Kubernetes permissions the operator uses: one declared list, the source of the chart's and the
kustomize base's RBAC (``ferry crds`` writes both, ``--check`` fails when they are stale).

Every rule names the code that needs it. ``tests/unit/test_chart_rbac.py`` scans the operator's API
call sites (the Kubernetes adapter's ``get/list/delete/apply/patch_status`` calls and the kinds the
builders emit) plus kopf's and the leader election's needs, and fails when this list grants more or
less than that; the Helm integration test then runs the operator under exactly these rules.

Three scopes:

- workload rules: in the watched namespaces. A ClusterRole when the operator watches every
  namespace; a Role per watched namespace in namespaced mode.
- cluster rules: cluster-scoped reads kopf makes in every mode (CRD discovery, so CRDs installed
  after the operator are noticed). Namespace discovery is added in namespaced mode only: kopf
  lists/watches namespaces to resolve globs such as ``team-*``.
- leader rules: the election Lease (installed with the operator), in its own namespace.

Server-side apply needs ``patch`` and, when it creates the object, ``create``. Where the operator
creates Roles for its own pods (drift and quality monitors patch ``inferenceservices/status``), RBAC lets it
grant only what it holds itself; it holds that permission, so no ``bind``/``escalate`` is granted.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.api import GROUP, KINDS

APPLY = ("create", "patch")


@dataclass(frozen=True)
class Rule:
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    resource_names: tuple[str, ...] = ()

    def as_manifest(self) -> dict:
        rule = {"apiGroups": [self.api_group], "resources": list(self.resources)}
        if self.resource_names:
            rule["resourceNames"] = list(self.resource_names)
        rule["verbs"] = list(self.verbs)
        return rule


FERRY_PLURALS = tuple(sorted(info.plural for info in KINDS.values()))

WORKLOAD_RULES: tuple[Rule, ...] = (
    Rule(GROUP, FERRY_PLURALS, ("get", "list", "watch", "patch"),
         "kopf watches every kind and patches its finalizer/annotations; reconcilers read related "
         "objects (adapters.kube get/list)"),
    Rule(GROUP, ("modelversions", "trainingruns"), ("create",),
         "TrainingRun applies its sweep trials (child TrainingRuns) and its registered ModelVersion; "
         "an InferenceService applies its retraining TrainingRuns (onDrift.retrain, retrainPolicy)"),
    Rule(GROUP, tuple(f"{plural}/status" for plural in FERRY_PLURALS), ("patch",),
         "adapters.kube.patch_status: one status patch per reconcile"),
    Rule("batch", ("jobs",), ("list", "watch", *APPLY),
         "FeaturePipeline/TrainingRun Jobs: applied, listed back, watched as children"),
    Rule("batch", ("cronjobs",), ("list", "watch", *APPLY, "delete"),
         "scheduled FeaturePipelines, drift and quality monitors: applied, deleted when the "
         "schedule or the monitor is removed, watched"),
    Rule("apps", ("deployments",), ("list", "watch", *APPLY, "delete"),
         "InferenceService Deployments (one per served version; retired ones deleted), watched"),
    Rule("autoscaling", ("horizontalpodautoscalers",), APPLY, "InferenceService autoscaling"),
    Rule("policy", ("poddisruptionbudgets",), APPLY, "InferenceService disruption budget"),
    Rule("gateway.networking.k8s.io", ("httproutes",), APPLY,
         "InferenceService traffic split (canary weights) through the Gateway API"),
    Rule("", ("pods",), ("list",), "TrainingRun reads its workers' pods for scheduling/OOM reasons; "
         "FeaturePipeline reads why a failed run's pod stopped"),
    Rule("", ("services",), ("list", *APPLY, "delete"),
         "TrainingRun worker Service; InferenceService Services per version (retired ones deleted)"),
    Rule("", ("serviceaccounts",), (*APPLY, "delete"),
         "the drift and the quality monitor's own ServiceAccounts per InferenceService (deleted "
         "with the monitor)"),
    Rule("rbac.authorization.k8s.io", ("roles", "rolebindings"), (*APPLY, "delete"),
         "the drift and quality monitors' Roles (patch their InferenceService's status) and their "
         "bindings, deleted with the monitor; RBAC lets the operator grant that only because it holds "
         "inferenceservices/status patch itself"),
    Rule("", ("events",), ("create",), "kopf.event: Events on every transition"),
)

CLUSTER_RULES: tuple[Rule, ...] = (
    Rule("", ("namespaces",), ("get",),
         "TrainingRun with podSecurity baseline: the namespace's enforced Pod Security level, so "
         "a run its namespace would refuse says so instead of waiting for pods that never come"),
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("list", "watch"),
         "kopf resource discovery notices CRDs installed or changed after start"),
    Rule("apiextensions.k8s.io", ("customresourcedefinitions",), ("get",),
         "reconcilers.gateway: the installed HTTPRoute schema, so no route field is silently pruned",
         ("httproutes.gateway.networking.k8s.io",)),
)

NAMESPACE_DISCOVERY_RULES: tuple[Rule, ...] = (
    Rule("", ("namespaces",), ("list", "watch"),
         "namespaced mode: kopf resolves namespace globs and notices new namespaces"),
)


def leader_rules(lease_name: str = "ferry-operator") -> tuple[Rule, ...]:
    """Read and renew one named Lease. The chart and the kustomize base create the Lease, so
    uninstalling removes it and no ``create`` is granted (a standby cannot re-create it while the
    release is being removed); ``leader.LeaderElector`` creates it only where it may (dev, tests)."""
    return (
        Rule("coordination.k8s.io", ("leases",), ("get", "update"),
             "leader.LeaderElector reads and renews its Lease", (lease_name,)),
    )


def manifest_rules(rules: tuple[Rule, ...]) -> list[dict]:
    return [rule.as_manifest() for rule in rules]


def granted(rules: tuple[Rule, ...]) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) triples the rules grant, ignoring resourceNames."""
    return {(r.api_group, resource, verb) for r in rules for resource in r.resources for verb in r.verbs}


def chart_rules_file() -> dict:
    """The data file the chart's RBAC templates read (``charts/ferry/files/rbac-rules.yaml``)."""
    return {
        "workload": manifest_rules(WORKLOAD_RULES),
        "cluster": manifest_rules(CLUSTER_RULES),
        "namespaceDiscovery": manifest_rules(NAMESPACE_DISCOVERY_RULES),
        "leader": manifest_rules(leader_rules()),
    }
