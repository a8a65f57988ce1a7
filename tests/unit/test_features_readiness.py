"""A TrainingRun waits for its features: the readiness decision it shares with InferenceService,
the held run, the controller's read → decide → apply on a fake API, and who a pipeline wakes."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, UTC
from types import SimpleNamespace

import kopf

from ferry.api import parse_spec
from ferry.reconcilers.features import consumers, published, readiness
from ferry.reconcilers.trainingrun import Observed, decide
from ferry.status import find_condition

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(**extra):
    return parse_spec("TrainingRun", {"image": "trainer:1", "command": ["train"], **extra})


def pipeline(ready: bool | None, uri: str | None = None, message: str = "") -> dict:
    conditions = [] if ready is None else [{"type": "Ready", "status": str(ready),
                                            "reason": "Published" if ready else "NoOutput",
                                            "message": message}]
    status = {"conditions": conditions}
    if uri:
        status["latestOutputUri"] = uri
    return {"metadata": {"name": "tx-v2"}, "status": status}


URI = "s3://ferry/features/transactions/v2/runs/tx-v2-1/"
NO_OUTPUT = pipeline(False, message="Waiting for the first validated run.")


def test_readiness_needs_a_ready_pipeline_with_a_published_output():
    assert readiness("tx-v2", None).condition() == (
        False, "FeaturesNotReady", "FeaturePipeline tx-v2: not found")
    waiting = readiness("tx-v2", NO_OUTPUT)
    assert waiting.condition() == (
        False, "FeaturesNotReady", "FeaturePipeline tx-v2: Waiting for the first validated run.")
    stale = readiness("tx-v2", pipeline(False, URI, "Last good output is 9000s old."))
    assert not stale.ready and stale.uri == URI, "a stale output is known but not used"
    ready = readiness("tx-v2", pipeline(True, URI))
    assert ready.condition() == (True, "FeaturesReady", "FeaturePipeline tx-v2 is Ready")
    assert ready.uri == URI
    assert published(pipeline(True, URI)) == ("True", URI) and published(None) == (None, None)


def test_a_run_is_held_without_a_job_until_the_output_is_published():
    run = spec(features="tx-v2")
    held, events, _ = decide(run, {}, 1, Observed(job=None, features=readiness("tx-v2", NO_OUTPUT)))
    assert held["phase"] == "Pending" and "jobName" not in held
    features = find_condition(held["conditions"], "FeaturesReady")
    assert (features["status"], features["reason"]) == ("False", "FeaturesNotReady")
    assert "tx-v2" in features["message"]
    succeeded = find_condition(held["conditions"], "Succeeded")
    assert (succeeded["status"], succeeded["reason"]) == ("Unknown", "WaitingForFeatures")
    assert find_condition(held["conditions"], "Scheduled") is None
    assert [(e.type, e.reason) for e in events] == [("Warning", "FeaturesNotReady")]

    again, events, _ = decide(run, held, 1, Observed(job=None,
                                                      features=readiness("tx-v2", NO_OUTPUT)))
    assert events == [] and again["conditions"] == held["conditions"], "no news, no write"

    job = {"metadata": {"name": "fraud", "creationTimestamp": at(0)}, "status": {}}
    started, events, _ = decide(run, held, 1, Observed(
        job=job, features=readiness("tx-v2", pipeline(True, URI))))
    assert find_condition(started["conditions"], "FeaturesReady")["status"] == "True"
    assert ("Normal", "FeaturesReady") in [(e.type, e.reason) for e in events]
    assert started["jobName"] == "fraud"


def test_inference_services_and_training_runs_share_the_decision():
    """The InferenceService controller's FeaturesReady comes from the same function."""
    from ferry.controllers import inferenceservice, trainingrun

    assert inferenceservice.readiness is readiness is trainingrun.readiness


class FakeKube:
    def __init__(self, objects: dict):
        self.objects, self.applied = objects, []

    async def get(self, api_version, kind, namespace, name):
        return self.objects.get((kind, name))

    async def list(self, api_version, kind, namespace, selector):
        return [o for (k, _), o in self.objects.items() if k == kind]

    async def apply(self, manifest):
        created = {**manifest, "metadata": {**manifest["metadata"],
                                            "creationTimestamp": at(0)}, "status": {}}
        self.objects[(manifest["kind"], manifest["metadata"]["name"])] = created
        self.applied.append(manifest)
        return created


def run_job(kube: FakeKube, status: dict):
    from ferry.controllers.trainingrun import Tracked, reconcile_job

    body = kopf.Body({"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
                      "metadata": {"name": "fraud", "namespace": "ml", "uid": "uid-1",
                                   "generation": 1},
                      "spec": {"image": "trainer:1", "features": "tx-v2"}})
    ctx = SimpleNamespace(kube=kube, config=SimpleNamespace(s3_endpoint=None,
                                                          default_object_store_secret=None))
    return asyncio.run(reconcile_job(ctx, body, spec(features="tx-v2"), status,
                                     Tracked(None, None, None, None)))


def test_the_controller_creates_no_job_while_held_and_passes_the_published_uri():
    kube = FakeKube({("FeaturePipeline", "tx-v2"): NO_OUTPUT})
    held, events, _ = run_job(kube, {})
    assert kube.applied == [] and held["phase"] == "Pending"
    assert "featuresUri" not in held

    kube.objects[("FeaturePipeline", "tx-v2")] = pipeline(True, URI)
    started, _, _ = run_job(kube, held)
    [job] = kube.applied
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FERRY_FEATURES_URI"] == URI and started["featuresUri"] == URI
    assert find_condition(started["conditions"], "FeaturesReady")["status"] == "True"

    # Started: a later pipeline change (here: gone stale) neither holds nor moves the run.
    kube.objects[("FeaturePipeline", "tx-v2")] = pipeline(False, URI + "new/", "stale")
    later, _, _ = run_job(kube, started)
    assert len(kube.applied) == 1 and later["featuresUri"] == URI
    assert find_condition(later["conditions"], "FeaturesReady")["status"] == "True"


def test_a_pipeline_change_wakes_waiting_runs_and_services_on_models_trained_on_it():
    objects = [
        ("r1", "TrainingRun", {"spec": {"features": "tx-v2"}}),
        ("r2", "TrainingRun", {"spec": {"features": "tx-v2"}, "status": {"jobName": "r2"}}),
        ("r3", "TrainingRun", {"spec": {"features": "tx-v1"}}),
        ("mv", "ModelVersion", {"metadata": {"name": "fraud-7"},
                                "spec": {"modelName": "fraud", "features": "tx-v2"}}),
        ("s1", "InferenceService", {"spec": {"model": {"modelVersion": "fraud-7"}}}),
        ("s2", "InferenceService", {"spec": {"model": {"modelName": "fraud"}}}),
        ("s3", "InferenceService", {"spec": {"model": {"modelName": "churn"}}}),
        ("s4", "InferenceService", {"spec": {"model": {"modelName": "other"}},
                                    "status": {"stableVersion": "fraud-7"}}),
    ]
    assert consumers("tx-v2", objects) == ["r1", "s1", "s2", "s4"]
    assert consumers("tx-v1", objects) == ["r3"]
