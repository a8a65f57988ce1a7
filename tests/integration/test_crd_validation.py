"""The real apiserver enforces the generated schemas and CEL rules, naming the field."""

from __future__ import annotations

import json

import pytest

from support.manifests import bad_manifests, cel_rules, rejection
from support.objects import EXAMPLES

# The CEL rules' manifests are applied by test_cel_rules.py; these are the schema's own checks
# (types, required fields, enums, ranges, patterns and the core/v1 shapes).
CEL_MESSAGES = {(rule.kind, rule.message) for rule in cel_rules()}
SCHEMA = [m for m in bad_manifests() if (m.kind, m.message) not in CEL_MESSAGES]


def test_schema_errors_have_bad_manifests_across_all_kinds():
    assert {m.kind for m in SCHEMA} == {
        "FeaturePipeline", "TrainingRun", "ModelVersion", "InferenceService"}


@pytest.mark.parametrize("manifest", SCHEMA, ids=[m.path.stem for m in SCHEMA])
def test_bad_manifest_is_rejected_naming_the_field(cluster, namespace, manifest):
    error = rejection(cluster, namespace, manifest)
    assert "is invalid" in error, error
    assert manifest.field in error, error
    assert manifest.message in error, error


def test_examples_are_accepted_and_listed_in_the_mlops_category(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES))
    listed = json.loads(cluster.kubectl("get", "mlops", "-n", namespace, "-o", "json").stdout)
    assert {item["kind"] for item in listed["items"]} == {
        "FeaturePipeline", "TrainingRun", "ModelVersion", "InferenceService"}
    table = cluster.kubectl("get", "mlops", "-n", namespace).stdout
    for column in ("FEATURESET", "VERSION", "WORKERS", "GPUS", "MODEL", "STABLE", "WEIGHT"):
        assert column in table, table


def test_short_names_resolve(cluster, namespace):
    for short in ("fp", "tr", "mv", "infsvc"):
        cluster.kubectl("get", short, "-n", namespace)


def test_scale_subresource_on_inference_service(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "inferenceservice.yaml"))
    cluster.kubectl("scale", "infsvc", "fraud", "-n", namespace, "--replicas=5")
    replicas = cluster.kubectl("get", "infsvc", "fraud", "-n", namespace, "-o",
                               "jsonpath={.spec.replicas}").stdout
    assert replicas == "5"
