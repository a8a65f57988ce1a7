"""A TrainingRun waits for its features: no Job while the FeaturePipeline it names has no
validated output, then it starts — woken by the pipeline, not by a resync — and the example
trainer trains on the published output."""

from __future__ import annotations

import json
import time

import pytest

from ferry_dev.services import BUCKET
from ferry.examples import data as synthetic
from ferry.status import find_condition
from support.cluster import IMAGE
from support.objects import apply_manifests, get_resource
from support.waiting import wait_for
from test_example_trainer import SECRET_KEYS, credentials

RESYNC_SECONDS = 60  # the operator's default periodic reconcile


def trainer(namespace: str, name: str, pipeline: str) -> dict:
    """The example trainer with no --features: it reads FERRY_FEATURES_URI, as in the demo."""
    env = [{"name": k, "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": k}}}
           for k in SECRET_KEYS]
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": IMAGE,
                     "command": ["python", "-m", "ferry.examples.trainer"],
                     "features": pipeline, "parameters": {"epochs": "2", "seed": "3"},
                     "mlflow": {"experiment": f"features-{namespace}"}, "env": env,
                     "nonRetryableExitCodes": [2]}}


def feature_pipeline(namespace: str, name: str, min_rows: int) -> dict:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "FeaturePipeline",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"featureSet": f"tx-{namespace}", "version": "v1",
                     "s3Credentials": {"name": "s3-creds"},
                     "transform": {"sql": {"sources": [{
                         "name": "raw", "uri": f"s3://{BUCKET}/raw/{namespace}/tx/*.parquet"}],
                         "query": "select * from raw"}},
                     "expectations": [{"rowCount": {"min": min_rows}}]}}


def run_of(cluster, namespace, name) -> dict:
    return get_resource(cluster, namespace, "trainingrun.ferry.dev", name)


def jobs(cluster, namespace) -> list[str]:
    found = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-l",
                                       "ferry.dev/trainingrun", "-o", "json").stdout)["items"]
    return [j["metadata"]["name"] for j in found]


def features_condition(cluster, namespace, name, status) -> dict | None:
    found = find_condition((run_of(cluster, namespace, name).get("status") or {}).get(
        "conditions"), "FeaturesReady")
    return found if found and found["status"] == status else None


@pytest.fixture
def raw_transactions(services, namespace) -> str:
    uri = f"s3://{BUCKET}/raw/{namespace}/tx/"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in services.env().items():
            patch.setenv(key, value)
        synthetic.write(synthetic.transactions(2000, seed=21), uri)
    return uri


def test_a_run_is_held_until_its_features_are_published_then_trains_on_them(
        cluster, namespace, operator, services, raw_transactions):
    apply_manifests(cluster, credentials(namespace, services),
                    trainer(namespace, "fraud", "tx"))
    held = wait_for(lambda: features_condition(cluster, namespace, "fraud", "False"),
                    timeout=60, message="FeaturesReady=False while the pipeline is missing")
    assert held["reason"] == "FeaturesNotReady" and "FeaturePipeline tx: not found" in \
        held["message"]
    status = run_of(cluster, namespace, "fraud")["status"]
    assert status["phase"] == "Pending" and "jobName" not in status
    assert jobs(cluster, namespace) == [], "no Job while the features are missing"

    # The pipeline's first run fails its expectations: nothing is published, still held.
    apply_manifests(cluster, feature_pipeline(namespace, "tx", min_rows=100_000))
    wait_for(lambda: (c := find_condition(get_resource(
        cluster, namespace, "featurepipeline.ferry.dev", "tx")["status"]["conditions"],
        "Validated")) and c["reason"] == "ExpectationsFailed", timeout=180,
        message="the pipeline's first run rejected")
    held = wait_for(lambda: (c := features_condition(cluster, namespace, "fraud", "False"))
                    and "first validated run" in c["message"] and c,
                    timeout=RESYNC_SECONDS / 2, message="FeaturesReady=False naming the wait")
    assert "FeaturePipeline tx" in held["message"]
    assert run_of(cluster, namespace, "fraud")["status"]["phase"] == "Pending"
    assert jobs(cluster, namespace) == [], "no Job without a validated output"

    # A run that passes publishes the output; the run starts on it.
    cluster.kubectl("patch", "featurepipeline.ferry.dev", "tx", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"expectations": [{"rowCount": {"min": 100}}]}}))
    pipeline = wait_for(lambda: (p := get_resource(cluster, namespace, "featurepipeline.ferry.dev",
                                                   "tx"))["status"].get("latestOutputUri") and p,
                        timeout=180, message="the pipeline published its first output")
    published_at = time.monotonic()
    uri = pipeline["status"]["latestOutputUri"]
    # Woken by the pipeline's status change, well before the periodic resync.
    wait_for(lambda: jobs(cluster, namespace) == ["fraud"], timeout=RESYNC_SECONDS / 2,
             message="the run's Job once the output is published")
    assert time.monotonic() - published_at < RESYNC_SECONDS / 2
    job = get_resource(cluster, namespace, "job", "fraud")
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FERRY_FEATURES_URI"] == uri
    ready = wait_for(lambda: features_condition(cluster, namespace, "fraud", "True"), timeout=30,
                     message="FeaturesReady=True")
    assert ready["reason"] == "FeaturesReady"

    def finished():
        current = run_of(cluster, namespace, "fraud")["status"]
        return current if current.get("phase") in ("Succeeded", "Failed") else None

    done = wait_for(finished, timeout=300, interval=1, message="the example trainer finished")
    assert done["phase"] == "Succeeded", done.get("message")
    assert done["featuresUri"] == uri
    assert done["metrics"]["auc"] > 0.6
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                             "involvedObject.name=fraud").stdout
    assert "FeaturesNotReady" in events
