"""The real apiserver enforces the generated schemas and CEL rules, naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from support.objects import EXAMPLES

BAD = sorted((Path(__file__).parent / "bad_manifests").glob("*.yaml"))


def expectation(path: Path) -> tuple[str, str]:
    """The ``# expect: <field>`` and ``# message: <substring>`` header of a bad manifest."""
    header = {}
    for line in path.read_text().splitlines():
        if line.startswith("# ") and ":" in line:
            key, _, value = line[2:].partition(":")
            header[key.strip()] = value.strip()
    return header["expect"], header["message"]


def test_there_are_enough_bad_manifests_across_all_kinds():
    kinds = {next(yaml.safe_load_all(p.read_text()))["kind"] for p in BAD}
    assert len(BAD) >= 12
    assert kinds == {"FeaturePipeline", "TrainingRun", "ModelVersion", "InferenceService"}


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_manifest_is_rejected_naming_the_field(cluster, namespace, path):
    field, message = expectation(path)
    *setup, bad = list(yaml.safe_load_all(path.read_text()))
    for document in setup:  # e.g. the original object of an immutability check
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))
    result = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad),
                             check=False)
    assert result.returncode != 0, f"{path.name} was accepted"
    assert "is invalid" in result.stderr, result.stderr
    assert field in result.stderr, result.stderr
    assert message in result.stderr, result.stderr


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
