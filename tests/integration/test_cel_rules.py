"""Every CEL rule of the generated CRDs is enforced by the real apiserver: each one has a bad
manifest (tests/integration/bad_manifests) that breaks exactly that rule, at the field the rule is
declared on, and is rejected with the rule's message. A rule added without a manifest fails here."""

from __future__ import annotations

import pytest

from support.manifests import bad_manifests, cel_rules, rejection

RULES = cel_rules()
MANIFESTS = bad_manifests()


def manifests_for(rule):
    return [m for m in MANIFESTS if (m.kind, m.field, m.message) == (rule.kind, rule.field, rule.message)]


def test_the_crds_declare_cel_rules_for_every_kind():
    assert {rule.kind for rule in RULES} == {
        "FeaturePipeline", "TrainingRun", "ModelVersion", "InferenceService"}


def test_a_field_and_message_identify_one_rule_of_its_kind():
    """So a manifest's ``# expect`` and ``# message`` headers say which rule it breaks (a type used
    at two fields, such as a probe, declares its rule at both)."""
    keys = [(rule.kind, rule.field, rule.message) for rule in RULES]
    assert len(keys) == len(set(keys)), sorted(keys)


def test_every_rule_has_a_bad_manifest_at_its_field():
    missing = [rule.id for rule in RULES if not manifests_for(rule)]
    assert not missing, f"CEL rules without a bad manifest: {missing}"
    misplaced = [(m.path.name, m.field, rule.field) for rule in RULES for m in manifests_for(rule)
                 if m.field != rule.field]
    assert not misplaced, misplaced


@pytest.mark.parametrize("rule", RULES, ids=[rule.id for rule in RULES])
def test_the_apiserver_rejects_the_rules_manifest_with_its_message(cluster, namespace, rule):
    for manifest in manifests_for(rule):
        error = rejection(cluster, namespace, manifest)
        assert f"{rule.field}: Invalid value" in error, error
        assert rule.message in error, error
