"""The declared permissions (ferry/generate/rbac.py) are exactly what the operator's code calls.

The Kubernetes adapter is the one door for the operator's API calls, so the calls are found by
scanning the operator package: ``<ctx>.kube.get/list/delete("apiVersion", "Kind", ...)``,
``patch_status`` (the status subresource of a Ferry kind) and ``apply`` of every object the builders
emit (server-side apply: ``patch``, and ``create`` when the object is new). kopf's own needs come
from the registered resources. A new call without its rule, or a rule nobody needs, fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from ferry.generate import rbac
from ferry.api import GROUP, KINDS
from ferry.controllers.children import CHILD_RESOURCES

PACKAGE = Path(rbac.__file__).parents[1]
# Code that runs inside the operator process (pods run features/serving/drift with their own RBAC).
OPERATOR_CODE = ("controllers", "reconcilers", "builders", "adapters", "leader.py", "status.py")
ADAPTER_METHODS = {"get": ("get",), "list": ("list",), "delete": ("delete",)}
FERRY_PLURALS = {info.kind: info.plural for info in KINDS.values()}


def plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x")):
        return lower + "es"
    return lower + "s"


def resource_of(api_version: str | None, kind: str) -> tuple[str, str]:
    """(apiGroup, plural) of a kind; a non-literal apiVersion is only resolvable for Ferry kinds."""
    if kind in FERRY_PLURALS and (api_version is None or api_version.startswith(GROUP)):
        return GROUP, FERRY_PLURALS[kind]
    if api_version is None:
        raise AssertionError(f"cannot tell the API group of {kind}: use a literal apiVersion")
    group = api_version.rpartition("/")[0]
    return group, plural(kind)


def operator_files() -> list[Path]:
    files = []
    for part in OPERATOR_CODE:
        path = PACKAGE / part
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return [f for f in files if f.exists()]


KNOWN = {"GROUP": GROUP, "VERSION": "v1alpha1", "API_VERSION": f"{GROUP}/v1alpha1"}


def module_constants(tree: ast.AST) -> dict[str, str]:
    """Module-level string constants (``KIND = "TrainingRun"``), resolved in order."""
    constants = dict(KNOWN)
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = literal(node.value, constants)
            if value is not None:
                constants[node.targets[0].id] = value
    return constants


def literal(node: ast.AST, constants: dict[str, str] = KNOWN) -> str | None:
    """The string value of a constant, a known name or an f-string of known names; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        return constants.get(node.id)
    if isinstance(node, ast.JoinedStr):
        parts = [literal(v.value if isinstance(v, ast.FormattedValue) else v, constants)
                 for v in node.values]
        return None if None in parts else "".join(parts)
    return None


def adapter_calls(tree: ast.AST, where: str) -> set[tuple[str, str, str]]:
    constants = module_constants(tree)
    used = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        target = node.func.value
        on_kube = (isinstance(target, ast.Attribute) and target.attr == "kube") or (
            isinstance(target, ast.Name) and target.id == "kube")
        if not on_kube:
            continue
        method = node.func.attr
        if method == "patch_status":
            used |= {(GROUP, f"{p}/status", "patch") for p in FERRY_PLURALS.values()}
        elif method in ADAPTER_METHODS:
            api_version, kind = (literal(arg, constants) for arg in node.args[:2])
            if kind is None:  # a variable kind: allowed for Ferry's own API only
                assert api_version and api_version.startswith(GROUP), (
                    f"{where}:{node.lineno}: kube.{method} with a non-literal kind outside {GROUP}")
                used |= {(GROUP, p, v) for p in FERRY_PLURALS.values() for v in ADAPTER_METHODS[method]}
            else:
                group, resource = resource_of(api_version, kind)
                used |= {(group, resource, v) for v in ADAPTER_METHODS[method]}
    return used


def built_kinds(tree: ast.AST) -> set[tuple[str, str]]:
    """Kinds of the manifests a builder returns: dict literals with apiVersion, kind and metadata
    (references such as ``scaleTargetRef`` have no metadata)."""
    constants = module_constants(tree)
    kinds = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant)}
            if {"apiVersion", "kind", "metadata"} <= keys.keys():
                kind = literal(keys["kind"], constants)
                if kind is None:  # e.g. an ownerReference built from the owner
                    continue
                kinds.add(resource_of(literal(keys["apiVersion"], constants), kind))
    return kinds


def code_needs() -> set[tuple[str, str, str]]:
    used: set[tuple[str, str, str]] = set()
    for path in operator_files():
        tree = ast.parse(path.read_text(), str(path))
        used |= adapter_calls(tree, str(path.relative_to(PACKAGE)))
        if "builders" in path.parts:
            used |= {(g, r, v) for g, r in built_kinds(tree) for v in rbac.APPLY}
    return used


def kopf_needs() -> set[tuple[str, str, str]]:
    """kopf watches every kind (list/watch), patches finalizers and annotations, posts Events,
    watches the labelled children and discovers CRDs."""
    needs = {(GROUP, p, v) for p in FERRY_PLURALS.values() for v in ("list", "watch", "patch")}
    needs |= {(group, resource, v) for group, _, resource in CHILD_RESOURCES for v in ("list", "watch")}
    needs |= {("", "events", "create"), ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
              ("apiextensions.k8s.io", "customresourcedefinitions", "watch")}
    return needs


def test_the_scanner_finds_known_call_sites():
    needs = code_needs()
    assert ("batch", "jobs", "list") in needs  # TrainingRun lists its Jobs
    assert ("batch", "cronjobs", "delete") in needs  # FeaturePipeline drops its CronJob
    assert (GROUP, "featurepipelines/status", "patch") in needs
    assert (GROUP, "modelversions", "create") in needs  # built by the TrainingRun builder


@pytest.mark.parametrize("source, expected", [
    ('ctx.kube.get("apps/v1", "Deployment", ns, name)', {("apps", "deployments", "get")}),
    ('kube.list("v1", "Pod", ns, "")', {("", "pods", "list")}),
    ('ctx.kube.delete("policy/v1", "PodDisruptionBudget", ns, n)',
     {("policy", "poddisruptionbudgets", "delete")}),
    ('ctx.kube.get(f"{GROUP}/{VERSION}", kind, ns, n)',
     {(GROUP, p, "get") for p in FERRY_PLURALS.values()}),
])
def test_adapter_calls_are_recognised(source, expected):
    assert adapter_calls(ast.parse(source), "snippet") == expected


def test_a_variable_kind_outside_ferry_is_refused():
    with pytest.raises(AssertionError, match="non-literal kind"):
        adapter_calls(ast.parse('ctx.kube.get("apps/v1", kind, ns, n)'), "snippet")


def test_builder_kinds_are_found():
    tree = ast.parse('G = "gateway.networking.k8s.io"\nKIND = "TrainingRun"\ndef f(owner):\n'
                     '    return [{"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",'
                     ' "metadata": {}, "spec": {"scaleTargetRef": {"apiVersion": "apps/v1",'
                     ' "kind": "Deployment"}}},'
                     ' {"apiVersion": owner["apiVersion"], "kind": "ModelVersion", "metadata": {}},'
                     ' {"apiVersion": owner["apiVersion"], "kind": KIND, "metadata": {}},'
                     ' {"apiVersion": f"{G}/v1", "kind": "HTTPRoute", "metadata": {}}]')
    assert built_kinds(tree) == {("autoscaling", "horizontalpodautoscalers"), (GROUP, "modelversions"),
                                 (GROUP, "trainingruns"), ("gateway.networking.k8s.io", "httproutes")}


def test_declared_rules_are_exactly_what_the_operator_uses():
    declared = rbac.granted(rbac.WORKLOAD_RULES + rbac.CLUSTER_RULES)
    needed = code_needs() | kopf_needs()
    assert sorted(needed - declared) == [], \
        "used by the code but not granted: add it to ferry/generate/rbac.py"
    assert sorted(declared - needed) == [], "granted but unused: remove it from ferry/generate/rbac.py"


def test_leader_rules_match_the_lease_calls():
    """leader.py reads (get) and replaces (update) one named Lease; it also creates a missing one,
    which the installs make unnecessary (they ship the Lease), so ``create`` is not granted."""
    source = (PACKAGE / "leader.py").read_text()
    calls = {"read_namespaced_lease": "get", "create_namespaced_lease": "create",
             "replace_namespaced_lease": "update"}
    used = {verb for call, verb in calls.items() if f".{call}(" in source}
    assert rbac.granted(rbac.leader_rules()) == {("coordination.k8s.io", "leases", v)
                                                 for v in used - {"create"}}
    (rule,) = rbac.leader_rules("my-lease")
    assert rule.resource_names == ("my-lease",)


def test_no_other_kubernetes_client_in_the_operator():
    """Only the adapter and the leader election talk to the API (so the scan above is complete)."""
    allowed = {("adapters/kube.py", "CustomObjectsApi"), ("controllers/manager.py", "CoordinationV1Api")}
    found = set()
    for path in operator_files() + [PACKAGE / "controllers" / "manager.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr.endswith("Api") and node.func.attr[0].isupper()):
                found.add((str(path.relative_to(PACKAGE)), node.func.attr))
    assert found <= allowed


def test_no_wildcards_or_escalation():
    for rule in rbac.WORKLOAD_RULES + rbac.CLUSTER_RULES + rbac.NAMESPACE_DISCOVERY_RULES + \
            rbac.leader_rules():
        assert "*" not in rule.verbs and "*" not in rule.resources and rule.api_group != "*"
        assert not {"bind", "escalate", "impersonate"} & set(rule.verbs)
        assert rule.why


def roles_built_by_the_operator() -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) of every rule in the Roles the builders create."""
    granted = set()
    for path in (PACKAGE / "builders").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            keys = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant)}
            if literal(keys.get("kind", ast.Constant(None))) == "Role" and "rules" in keys:
                for rule in keys["rules"].elts:
                    fields = {k.value: [e.value for e in v.elts if isinstance(e, ast.Constant)]
                              for k, v in zip(rule.keys, rule.values, strict=True)
                              if isinstance(v, ast.List)}
                    granted |= {(g, r, v) for g in fields["apiGroups"] for r in fields["resources"]
                                for v in fields["verbs"]}
    return granted


def test_the_operator_holds_what_its_roles_grant():
    """RBAC refuses to create a Role granting more than its creator holds (no escalate/bind)."""
    built = roles_built_by_the_operator()
    assert built <= rbac.granted(rbac.WORKLOAD_RULES)
