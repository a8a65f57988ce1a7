"""The approval admission policy ships identically in the chart and the kustomize base, from one
declaration (``ferry.generate.admission``); the real apiserver's verdicts are tested in
tests/integration/test_approval_policy.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from ferry.generate import admission
from ferry_dev.tools import CHART_DIR, render_chart

ROOT = CHART_DIR.parents[1]
POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")


def by_name(objects: list[dict]) -> dict[tuple[str, str], dict]:
    return {(o["kind"], o["metadata"]["name"]): o for o in objects}


def test_chart_renders_the_declared_policy_and_roles():
    rendered = by_name(render_chart(release="ferry", namespace="ferry-system"))
    for declared in admission.manifests():
        key = declared["kind"], declared["metadata"]["name"]
        assert key in rendered, key
        body = "spec" if "spec" in declared else "rules"
        assert rendered[key][body] == declared[body], key
        assert "namespace" not in rendered[key]["metadata"]


def test_kustomize_base_ships_the_generated_file():
    shipped = list(yaml.safe_load_all((ROOT / "manifests/base/approval-policy.yaml").read_text()))
    assert shipped == admission.manifests()
    kustomization = yaml.safe_load((ROOT / "manifests/base/kustomization.yaml").read_text())
    assert "approval-policy.yaml" in kustomization["resources"]


def test_policy_can_be_switched_off_and_follows_the_release_name():
    names = {(o["kind"], o["metadata"]["name"])
             for o in render_chart("--set", "approvalPolicy.enabled=false")}
    assert not {kind for kind, _ in names} & set(POLICY_KINDS)
    renamed = by_name(render_chart(release="mlops", namespace="ferry-system"))
    assert renamed["ValidatingAdmissionPolicyBinding", "mlops-ferry-approval"]["spec"][
        "policyName"] == "mlops-ferry-approval"
    assert ("ClusterRole", "mlops-ferry-approver") in renamed


def test_roles_grant_only_the_custom_verbs():
    assert admission.approver_rules() == [{"apiGroups": ["ferry.dev"], "resources": ["modelversions"],
                                           "verbs": ["approve"]}]
    assert admission.recorder_rules()[0]["verbs"] == ["attest"]


def test_only_changes_to_the_approval_are_matched():
    """Status writes go to the status subresource, which the rule does not name."""
    (rule,) = admission.policy_spec()["matchConstraints"]["resourceRules"]
    assert rule["resources"] == ["modelversions"] and rule["operations"] == ["CREATE", "UPDATE"]
    expression = admission.policy_spec()["matchConditions"][0]["expression"]
    for field in ("approvedBy", "comment", "required"):
        assert f"?approval.?{field}" in expression
    assert Path(CHART_DIR / "files/approval-policy.yaml").exists()
