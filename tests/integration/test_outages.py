"""Dependency outages injected mid-flow: S3, MLflow and the apiserver go away while Ferry works and
come back. Conditions say what is wrong, nothing is lost (no lost request, no duplicate Job, run or
MLflow version) and the work resumes when the part is back. Prometheus down mid-canary is
``test_inferenceservice.py::test_prometheus_down_holds_the_canary_and_it_resumes_when_back``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

from ferry.adapters.mlflow import Registry
from ferry.status import find_condition
from support.cluster import IMAGE
from support.featuredata import pipeline, secret, sql_transform, upload_raw_data
from support.objects import apply, apply_manifests, get, phase_reached, reconciled
from support.rollouts import (
    alias, event_reasons, ferry, healthy_on, inference_service, model_version, patch_spec,
    registered, status_of)
from support.serving import Traffic
from support.waiting import wait_for


def condition(obj: dict, type_: str) -> dict:
    return find_condition((obj.get("status") or {}).get("conditions"), type_) or {}


def jobs(cluster, namespace: str) -> list[str]:
    items = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)
    return [job["metadata"]["name"] for job in items["items"]]


@contextmanager
def down(services, name: str):
    """The session's ``name`` service stopped for the block, started again (same data) after."""
    part = next(s for s in services.services if s.name == name)
    part.stop()
    try:
        yield
    finally:
        part.start()


def test_s3_down_mid_pipeline_is_reported_and_the_run_completes_when_back(
        cluster, namespace, operator, services):
    apply_manifests(cluster, secret(namespace, upload_raw_data(services, namespace)),
                    pipeline(namespace, "tx", transform=sql_transform(namespace)))
    wait_for(lambda: jobs(cluster, namespace), timeout=60, message="the pipeline's Job")
    with down(services, "seaweedfs"):
        unreadable = wait_for(
            lambda: (o := get(cluster, namespace, "FeaturePipeline", "tx")) and
            condition(o, "OutputsReadable").get("status") == "False" and o,
            timeout=90, message="OutputsReadable=False while S3 is down")
        assert condition(unreadable, "OutputsReadable")["reason"] == "ObjectStoreUnavailable"
    ready = wait_for(lambda: (o := get(cluster, namespace, "FeaturePipeline", "tx")) and
                     o.get("status", {}).get("phase") == "Ready" and
                     condition(o, "OutputsReadable").get("status") == "True" and o,
                     timeout=180, message="pipeline Ready once S3 is back")
    assert ready["status"]["lastSuccessfulRun"]["rows"] == 40
    assert len(jobs(cluster, namespace)) == 1, "the run resumed, it was not started again"
    assert event_reasons(cluster, namespace, "tx").count("ObjectStoreUnavailable") == 1, \
        "one Warning Event for the outage"


def test_mlflow_down_mid_canary_keeps_serving_and_moves_the_alias_when_back(
        cluster, namespace, operator, scraped, runs):
    """Promotion during an MLflow outage: traffic moves to the candidate (the pods have their
    model), RegistryReachable says why the champion alias has not moved, and it moves once
    MLflow is back. Not one request is lost."""
    services = scraped
    model = f"outage-{namespace}"
    apply_manifests(cluster, model_version(namespace, "o-1", model, runs["double"]))
    registered(cluster, namespace, "o-1", "1")
    apply_manifests(cluster, inference_service(namespace, "api", {"modelVersion": "o-1"},
                                               replicas=1, strategy={"canary": {"steps": [
                                                   {"setWeight": 50}, {"pause": {}}]}}))
    healthy_on(cluster, namespace, "api", "o-1")
    apply_manifests(cluster, model_version(namespace, "o-2", model, runs["triple"]))
    registered(cluster, namespace, "o-2", "2")
    with Traffic(cluster.api_client, namespace, "api") as traffic:
        patch_spec(cluster, namespace, "api", {"model": {"modelVersion": "o-2"}})
        wait_for(lambda: status_of(cluster, namespace, "api").get("phase") == "Paused",
                 timeout=150, message="canary paused at its step")
        with down(services, "mlflow"):
            ferry(cluster, "promote", "infsvc/api", "-n", namespace)
            unreachable = wait_for(
                lambda: (o := get(cluster, namespace, "InferenceService", "api")) and
                condition(o, "RegistryReachable").get("status") == "False" and o,
                timeout=120, message="RegistryReachable=False while MLflow is down")
            assert condition(unreachable, "RegistryReachable")["reason"] == "RegistryUnavailable"
        healthy_on(cluster, namespace, "api", "o-2", timeout=180)
        wait_for(lambda: alias(services, model, "champion") == "2", timeout=120,
                 message="champion moved once MLflow is back")
        # The reconcile that moved the alias writes the condition right after.
        wait_for(lambda: condition(get(cluster, namespace, "InferenceService", "api"),
                                   "RegistryReachable").get("status") == "True", timeout=30,
                 message="RegistryReachable=True once MLflow is back")
    assert not traffic.lost(), f"requests lost during the outage: {traffic.lost()[:10]}"
    assert {a.code for a in traffic.answers} == {200}
    registry = Registry(services.endpoints["mlflow"])
    assert sorted(v.version for v in registry.client.search_model_versions(
        f"name = '{model}'")) == ["1", "2"]


def test_apiserver_restart_mid_run_loses_nothing_and_watches_resume(
        cluster, namespace, operator, services):
    apply(cluster, namespace, {
        "apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "slow"},
        "spec": {"image": IMAGE, "command": ["python", "-c", "import time; time.sleep(20)"]}})
    wait_for(lambda: get(cluster, namespace, "TrainingRun", "slow").get("status", {}).get(
        "phase") == "Running", timeout=120, message="run Running")
    cluster.restart_apiserver(down_seconds=8)
    # Shorter than its renew deadline (30 s here): the operator keeps its Lease and carries on.
    # A longer outage makes it exit, fenced, for its Deployment to restart it (test_chaos.py
    # shows the restarts resume without duplicates).
    assert operator.process.poll() is None, "the operator outlived the apiserver restart"
    done = wait_for(lambda: phase_reached(get(cluster, namespace, "TrainingRun", "slow"),
                                          "Succeeded"), timeout=180, message="run Succeeded")
    assert len(jobs(cluster, namespace)) == 1, "one Job, not recreated after the restart"
    registry = Registry(services.endpoints["mlflow"])
    experiment = registry.client.get_experiment(done["status"]["experimentId"])
    assert len(registry.client.search_runs([experiment.experiment_id])) == 1
    # Objects created after the restart are seen: the operator's watches came back.
    apply(cluster, namespace, {
        "apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "after"},
        "spec": {"image": IMAGE, "command": ["python", "-c", "pass"]}})
    wait_for(lambda: reconciled(get(cluster, namespace, "TrainingRun", "after")), timeout=90,
             message="a run created after the restart reconciled")
