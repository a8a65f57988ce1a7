"""Authenticated approvals: the ValidatingAdmissionPolicy that makes ``spec.approval`` trustworthy.

Without it, anyone who can edit a ModelVersion can write ``approvedBy: alice``. With it the
apiserver itself checks every change to ``spec.approval`` (Kubernetes ≥ 1.30, no webhook to run):

- the requesting user must hold the verb ``approve`` on ``modelversions.ferry.dev`` for that
  object (an RBAC check through the policy's ``authorizer``; the ClusterRole ``ferry-approver``
  grants it, bind it per namespace with a RoleBinding);
- a non-empty ``approvedBy`` must be the requesting user's name (``ferry approve`` fills it in from
  the caller's identity), so the recorded approver is who the apiserver authenticated.

What counts as a change to the approval: ``approvedBy`` or ``comment`` set or changed (withdrawing
an approval is an approval decision too), or ``required`` lowered from true to false (which would
otherwise let an editor skip the human step). Raising ``required``, every other field, the
operator's status writes (the ``status`` subresource is not matched) and its finalizer patches are
not matched at all, so editors and the operator work as before.

Creation is judged by the same rule as an update: creating a ModelVersion that already carries an
``approvedBy`` needs the same right and identity. Approvals that arrive through Git (Argo CD
applying a committed, reviewed approval) come from a controller's identity, not the approver's:
bind that controller's ServiceAccount to the ClusterRole ``ferry-approval-recorder`` (verb
``attest``), which lets it record an approval given elsewhere under any name. The review of the
commit is then the authentication, and the audit log names the controller that wrote it. Without
that binding the sync is refused with the reason. A TrainingRun's ``register.approval`` may set
``required``; an ``approvedBy`` there is refused the same way (the operator is not an approver).

Every admitted approval change adds the audit annotation ``ferry-approval.ferry.dev/approval``
(who asked, and the name written).

``ferry crds`` writes the chart's data file and the kustomize manifest from this module.
"""

from __future__ import annotations

from ferry.api import GROUP

POLICY_NAME = "ferry-approval"
APPROVE_VERB = "approve"
ATTEST_VERB = "attest"
APPROVER_ROLE = "ferry-approver"
RECORDER_ROLE = "ferry-approval-recorder"
RESOURCE = "modelversions"


def _field(obj: str, name: str, default: str) -> str:
    return f"{obj}.spec.?approval.?{name}.orValue({default})"


def _changed(name: str, default: str) -> str:
    return f"{_field('object', name, default)} != {_field('oldObject', name, default)}"


EMPTY = "''"
# CREATE: an approval statement is present. UPDATE: it changed, or `required` was lowered.
MATCH_APPROVAL_CHANGE = (
    f"request.operation == 'CREATE' ? "
    f"({_field('object', 'approvedBy', EMPTY)} != '' || {_field('object', 'comment', EMPTY)} != '') : "
    f"({_changed('approvedBy', EMPTY)} || {_changed('comment', EMPTY)} || "
    f"({_field('oldObject', 'required', 'false')} && !{_field('object', 'required', 'false')}))"
)


def policy_spec() -> dict:
    approved_by = _field("object", "approvedBy", EMPTY)
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{
            "apiGroups": [GROUP], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
            "resources": [RESOURCE]}]},
        "matchConditions": [{"name": "approval-changed", "expression": MATCH_APPROVAL_CHANGE}],
        "variables": [
            {"name": "approvedBy", "expression": approved_by},
            {"name": "user", "expression": "request.userInfo.username"},
            {"name": "mayAttest",
             "expression": f"authorizer.requestResource.check('{ATTEST_VERB}').allowed()"},
        ],
        "validations": [
            {"expression": f"variables.mayAttest || "
                           f"authorizer.requestResource.check('{APPROVE_VERB}').allowed()",
             "reason": "Forbidden",
             "messageExpression": (
                 "'user ' + variables.user + ' may not approve ModelVersions in namespace ' + "
                 f"request.namespace + ': changing spec.approval needs the verb {APPROVE_VERB} on "
                 f"{RESOURCE}.{GROUP} (ClusterRole {APPROVER_ROLE})'")},
            {"expression": "variables.mayAttest || variables.approvedBy == '' || "
                           "variables.approvedBy == variables.user",
             "reason": "Forbidden",
             "messageExpression": (
                 "'spec.approval.approvedBy must be the requesting user: it names ' + "
                 "variables.approvedBy + ' but the request comes from ' + variables.user + "
                 "' (ferry approve fills it in from your identity)'")},
        ],
        "auditAnnotations": [{
            "key": "approval",
            "valueExpression": "'user ' + variables.user + ' wrote approvedBy=' + "
                               "variables.approvedBy"}],
    }


def binding_spec(policy_name: str = POLICY_NAME) -> dict:
    return {"policyName": policy_name, "validationActions": ["Deny"]}


def approver_rules() -> list[dict]:
    """Only the right to approve; editing the object needs an editing role as well."""
    return [{"apiGroups": [GROUP], "resources": [RESOURCE], "verbs": [APPROVE_VERB]}]


def recorder_rules() -> list[dict]:
    """For GitOps controllers that apply approvals reviewed in Git."""
    return [{"apiGroups": [GROUP], "resources": [RESOURCE], "verbs": [ATTEST_VERB]}]


def chart_file() -> dict:
    """The data file the chart's template reads (``charts/ferry/files/approval-policy.yaml``)."""
    return {"policy": policy_spec(), "binding": {"validationActions": ["Deny"]},
            "approverRules": approver_rules(), "recorderRules": recorder_rules()}


def manifests() -> list[dict]:
    """The policy, its binding and the two ClusterRoles, as the kustomize base installs them."""
    def cluster_role(name: str, rules: list[dict]) -> dict:
        return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
                "metadata": {"name": name}, "rules": rules}

    return [
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": POLICY_NAME}, "spec": policy_spec()},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": POLICY_NAME}, "spec": binding_spec()},
        cluster_role(APPROVER_ROLE, approver_rules()),
        cluster_role(RECORDER_ROLE, recorder_rules()),
    ]
