"""The operator runtime on the real control plane: acceptance, generations, events, metrics."""

from __future__ import annotations

import json

import pytest

from support.metrics import sample_total
from support.objects import apply, example, get, reconciled
from support.waiting import wait_for

KINDS = ["FeaturePipeline", "TrainingRun", "ModelVersion", "InferenceService"]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_gets_observed_generation_and_accepted(cluster, namespace, operator, kind):
    obj = example(kind)
    apply(cluster, namespace, obj)
    name = obj["metadata"]["name"]
    current = wait_for(lambda: (o := get(cluster, namespace, kind, name)) and reconciled(o) and o,
                       timeout=30, message=f"{kind} Accepted")
    assert current["status"]["phase"]
    events = json.loads(cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector",
        f"involvedObject.name={name},reason=SpecValid", "-o", "json").stdout)["items"]
    assert events, "an Accepted transition posts an Event"


def test_spec_update_bumps_observed_generation(cluster, namespace, operator):
    obj = example("TrainingRun")
    apply(cluster, namespace, obj)
    name = obj["metadata"]["name"]
    wait_for(lambda: reconciled(get(cluster, namespace, "TrainingRun", name)), timeout=30,
             message="first generation reconciled")
    cluster.kubectl("patch", "trainingrun.ferry.dev", name, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"parameters": {"lr": "0.5"}}}))
    updated = wait_for(
        lambda: (o := get(cluster, namespace, "TrainingRun", name))["metadata"]["generation"] == 2
        and reconciled(o) and o, timeout=30, message="generation 2 reconciled")
    assert updated["status"]["observedGeneration"] == 2


def test_metrics_count_reconciles_per_kind(cluster, namespace, operator):
    before = sample_total(operator.metrics(), "ferry_reconcile_total", kind="ModelVersion",
                          result="success")
    obj = example("ModelVersion")
    apply(cluster, namespace, obj)
    wait_for(lambda: reconciled(get(cluster, namespace, "ModelVersion", obj["metadata"]["name"])),
             timeout=30, message="ModelVersion reconciled")
    wait_for(lambda: sample_total(operator.metrics(), "ferry_reconcile_total",
                                  kind="ModelVersion", result="success") > before,
             timeout=30, message="ModelVersion reconcile counted")
    text = operator.metrics()
    assert sample_total(text, "ferry_reconcile_duration_seconds_count", kind="ModelVersion") > 0
    assert sample_total(text, "ferry_objects", kind="ModelVersion") >= 1
    assert sample_total(text, "ferry_leader") == 1
