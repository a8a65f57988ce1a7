"""The quality monitor in the InferenceService reconcile (``controllers/quality.py``): children
applied or deleted, the two conditions, their Events, the gauge, and when a report wakes the
service."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from prometheus_client import generate_latest

from ferry.api.inferenceservice import InferenceServiceSpec
from ferry.builders.inferenceservice import Serving
from ferry.controllers.quality import reconcile_quality, stale
from ferry.observability.metrics import QUALITY, REGISTRY
from ferry.status import find_condition

INFSVC = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
          "metadata": {"name": "fraud", "namespace": "team-a", "uid": "u-q", "generation": 2}}
SERVING = Serving(image="ferry:1", mlflow_uri=None, s3_endpoint="http://s3", bucket="ferry",
                  object_store_secret=None)
DEGRADED = {"verdict": "Degraded", "message": "fraud-2: accuracy 0.6 < min 0.8", "runId": "job-7",
            "versions": [{"version": "fraud-2", "verdict": "Degraded",
                          "metrics": [{"name": "accuracy", "value": 0.6, "estimated": False}],
                          "slices": [{"name": "de", "verdict": "Inconclusive", "metrics": [
                              {"name": "accuracy", "value": 0.75, "estimated": True}]}]}]}


class Kube:
    def __init__(self):
        self.applied, self.deleted = [], []

    async def apply(self, manifest):
        self.applied.append((manifest["kind"], manifest["metadata"]["name"]))

    async def delete(self, api_version, kind, namespace, name):
        self.deleted.append((kind, name))


def spec(quality=True, logging=True) -> InferenceServiceSpec:
    raw = {"model": {"modelVersion": "fraud-2"}}
    if logging:
        raw["predictionLogging"] = {"sampleRate": 1.0}
    if quality:
        raw["monitoring"] = {"quality": {"thresholds": {"accuracy": {"min": 0.8}}}}
    return InferenceServiceSpec.model_validate(raw)


def reconcile(kube, s, status, conditions):
    ctx = SimpleNamespace(kube=kube)
    return asyncio.run(reconcile_quality(ctx, INFSVC, s, SERVING, status, conditions))


def gauge_lines() -> list[str]:
    return [line for line in generate_latest(REGISTRY).decode().splitlines()
            if line.startswith("ferry_model_quality{") and 'inferenceservice="fraud"' in line]


def test_scheduled_then_degraded_is_told_once_and_exported():
    kube = Kube()
    first = reconcile(kube, spec(), {}, [])
    assert kube.applied == [("ServiceAccount", "fraud-quality"), ("Role", "fraud-quality"),
                            ("RoleBinding", "fraud-quality"), ("CronJob", "fraud-quality")]
    assert find_condition(first.conditions, "QualityMonitor")["reason"] == "Scheduled"
    waiting = find_condition(first.conditions, "QualityHealthy")
    assert (waiting["status"], waiting["reason"]) == ("Unknown", "AwaitingFirstRun")
    assert first.events == []  # scheduling at the first try and waiting are not news

    status = {"quality": DEGRADED, "conditions": first.conditions}
    assert stale(status)
    second = reconcile(kube, spec(), status, first.conditions)
    degraded = find_condition(second.conditions, "QualityHealthy")
    assert (degraded["status"], degraded["reason"]) == ("False", "Degraded")
    assert degraded["message"] == "fraud-2: accuracy 0.6 < min 0.8 (run job-7)"
    assert [(e.type, e.reason) for e in second.events] == [("Warning", "Degraded")]
    assert not stale({"quality": DEGRADED, "conditions": second.conditions})
    assert reconcile(kube, spec(), {"quality": DEGRADED}, second.conditions).events == []
    assert sorted(gauge_lines()) == [
        'ferry_model_quality{estimated="false",inferenceservice="fraud",metric="accuracy",'
        'namespace="team-a",slice="",version="fraud-2"} 0.6',
        'ferry_model_quality{estimated="true",inferenceservice="fraud",metric="accuracy",'
        'namespace="team-a",slice="de",version="fraud-2"} 0.75']

    healthy = {**DEGRADED, "verdict": "Healthy", "message": "1 of 2 within", "runId": "job-8"}
    third = reconcile(kube, spec(), {"quality": healthy}, second.conditions)
    assert [(e.type, e.reason) for e in third.events] == [("Normal", "Healthy")]


def test_without_a_prediction_log_nothing_is_scheduled():
    kube = Kube()
    result = reconcile(kube, spec(logging=False), {}, [])
    condition = find_condition(result.conditions, "QualityMonitor")
    assert (condition["status"], condition["reason"]) == ("False", "NoPredictionLog")
    assert kube.applied == [] and [e.reason for e in result.events] == ["NoPredictionLog"]


def test_removing_quality_monitoring_deletes_the_children_conditions_and_series():
    kube = Kube()
    scheduled = reconcile(kube, spec(), {"quality": DEGRADED}, [])
    assert gauge_lines()
    removed = reconcile(kube, spec(quality=False), {"quality": DEGRADED}, scheduled.conditions)
    assert sorted(kube.deleted) == [("CronJob", "fraud-quality"), ("Role", "fraud-quality"),
                                    ("RoleBinding", "fraud-quality"),
                                    ("ServiceAccount", "fraud-quality")]
    assert removed.conditions == [] and [e.reason for e in removed.events] == [
        "QualityMonitorRemoved"]
    assert gauge_lines() == []
    kube.deleted.clear()
    assert reconcile(kube, spec(quality=False), {}, []).events == [] and kube.deleted == []
    QUALITY.forget("u-q")
