"""Chaos: the operator is SIGKILLed at random moments of each flow and restarted, and every flow
still reaches the right end, with exactly one MLflow version per ModelVersion, one Job per
attempt, one MLflow run per trial, no orphaned children and, for rollouts, no lost request.

CI runs one trial per scenario; ``make chaos`` runs ``FERRY_CHAOS_TRIALS`` of each and prints
trials passed/total with the moments the kills hit.
"""

from __future__ import annotations

import json
import signal
import uuid

import pytest

from ferry.adapters.mlflow import UID_TAG, Registry
from support.chaos import FAST_LEASE, RECORDS, TRIALS, Killer, Trial, orphans
from support.cluster import IMAGE, create_namespace, start_operator
from support.featuredata import pipeline, secret, sql_transform, upload_raw_data
from support.objects import apply, apply_manifests, get, get_resource, phase_reached
from support.rollouts import (
    CANARY_ANALYSIS, alias, deployment_uids, healthy_on, inference_service, model_version,
    patch_spec, registered, status_of)
from support.serving import Traffic
from support.sweeps import TRIAL, jobs_of
from support.waiting import wait_for


@pytest.fixture
def chaos(cluster, services, tmp_path, request):
    """A namespace of its own and an operator for it (chart identity, fast Lease); the trial's
    record joins the report. Yields (namespace, operator, trial)."""
    namespace = create_namespace(cluster, "chaos")
    operator = start_operator(cluster, tmp_path, namespace, **services.env(), **FAST_LEASE,
                              FERRY_LEASE_NAME=f"ferry-{namespace}")
    trial = Trial(request.node.originalname.removeprefix("test_chaos_"),
                  request.node.callspec.params["trial"])
    RECORDS.append(trial)
    try:
        yield namespace, operator, trial
    finally:
        if operator.process.poll() is None:  # the test failed before its Killer took over
            operator.stop(signal.SIGKILL)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def versions_of(services, model: str) -> list[str]:
    registry = Registry(services.endpoints["mlflow"])
    return sorted(v.version for v in registry.client.search_model_versions(f"name = '{model}'"))


def rollout_moment(cluster, namespace, name):
    def describe() -> str:
        status = status_of(cluster, namespace, name)
        return (f"{status.get('phase')} step {status.get('currentStep')} "
                f"weight {status.get('canaryWeight')}")
    return describe


def start_canary(cluster, namespace, runs, candidate: str, steps: list[dict]):
    """``api`` Healthy on c-1 (2·x0), then c-2 (``candidate``) applied: returns the model name."""
    model = f"chaos-{namespace}"
    apply_manifests(cluster, model_version(namespace, "c-1", model, runs["double"]))
    registered(cluster, namespace, "c-1", "1")
    apply_manifests(cluster, inference_service(
        namespace, "api", {"modelVersion": "c-1"}, replicas=1,
        strategy={"canary": {"steps": steps, "analysis": CANARY_ANALYSIS}}))
    healthy_on(cluster, namespace, "api", "c-1")
    return model


def roll_to_candidate(cluster, namespace, model, runs, candidate):
    apply_manifests(cluster, model_version(namespace, "c-2", model, runs[candidate]))
    registered(cluster, namespace, "c-2", "2", timeout=120)
    patch_spec(cluster, namespace, "api", {"model": {"modelVersion": "c-2"}})


def assert_registry(services, model: str, champion: str) -> None:
    """Two MLflow versions, however often the operator died, and only the champion alias."""
    assert versions_of(services, model) == ["1", "2"]
    assert alias(services, model, "champion") == champion
    assert alias(services, model, "challenger") is None


def assert_clean(cluster, namespace, traffic: Traffic | None = None):
    """No orphan once the garbage collector has caught up with what the operator deleted (a
    deleted Deployment's ReplicaSets go a moment after it)."""
    left: list[str] = []

    def collected() -> bool:
        left[:] = orphans(cluster, namespace)
        return not left
    try:
        wait_for(collected, timeout=60, message="no orphaned children")
    except AssertionError:
        raise AssertionError(f"orphaned children: {left}") from None
    if traffic is not None:
        assert not traffic.lost(), f"requests lost across the kills: {traffic.lost()[:10]}"


@pytest.mark.parametrize("trial", range(TRIALS))
def test_chaos_canary_good(cluster, scraped, runs, chaos, trial):
    namespace, operator, record = chaos
    model = start_canary(cluster, namespace, runs, "triple",
                         [{"setWeight": 50}, {"pause": {"duration": "4s"}}])
    killer = Killer(operator, record, rollout_moment(cluster, namespace, "api"), kills=3,
                    delays=(2.0, 12.0))
    with Traffic(cluster.api_client, namespace, "api") as traffic, killer:
        roll_to_candidate(cluster, namespace, model, runs, "triple")
        healthy_on(cluster, namespace, "api", "c-2", timeout=300)
        wait_for(lambda: set(deployment_uids(cluster, namespace, "api")) == {"api-c-2"},
                 timeout=90, message="the old version's Deployment removed")
    record.load = traffic.rate()
    assert {a.code for a in traffic.answers} == {200}
    assert_registry(scraped, model, champion="2")
    assert_clean(cluster, namespace, traffic)
    record.passed = True


@pytest.mark.parametrize("trial", range(TRIALS))
def test_chaos_canary_bad(cluster, scraped, runs, chaos, trial):
    namespace, operator, record = chaos
    model = start_canary(cluster, namespace, runs, "flaky", [{"setWeight": 50}, {"pause": {}}])
    killer = Killer(operator, record, rollout_moment(cluster, namespace, "api"), kills=3,
                    delays=(2.0, 12.0))
    with Traffic(cluster.api_client, namespace, "api") as traffic, killer:
        roll_to_candidate(cluster, namespace, model, runs, "flaky")
        back = wait_for(lambda: (s := status_of(cluster, namespace, "api")).get("phase")
                        == "RolledBack" and s, timeout=300, message="canary rolled back")
        wait_for(lambda: get_resource(cluster, namespace, "deployment", "api-c-2")["spec"][
            "replicas"] == 0, timeout=90, message="the rolled-back canary scaled down")
    record.load = traffic.rate()
    assert back["stableVersion"] == "c-1" and not back.get("canaryVersion")
    assert {a.code for a in traffic.answers} <= {200, 500}, "only the flaky model's own errors"
    assert_registry(scraped, model, champion="1")
    assert_clean(cluster, namespace, traffic)
    record.passed = True


@pytest.mark.parametrize("trial", range(TRIALS))
def test_chaos_sweep(cluster, services, chaos, trial):
    namespace, operator, record = chaos
    experiment = f"chaos-{namespace}"

    def moment() -> str:
        status = get(cluster, namespace, "TrainingRun", "tune").get("status") or {}
        phases = [t.get("phase") for t in status.get("trials", [])]
        return f"{status.get('phase')} trials {phases}"

    with Killer(operator, record, moment, kills=3, delays=(1.0, 10.0)):
        apply(cluster, namespace, {
            "apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "tune"},
            "spec": {"image": IMAGE, "command": ["python", "-c", TRIAL],
                     "parameters": {"lr": "1"}, "mlflow": {"experiment": experiment},
                     "sweep": {"algorithm": "grid", "maxTrials": 4, "parallelism": 2,
                               "parameters": [{"name": "lr",
                                               "values": ["0.001", "0.01", "0.1", "1"]}],
                               "objective": {"metric": "score", "goal": "maximize"}}}})
        done = wait_for(lambda: phase_reached(get(cluster, namespace, "TrainingRun", "tune"),
                                              "Succeeded"),
                        timeout=360, interval=1, message="sweep succeeded")
    status = done["status"]
    trials = sorted(t["name"] for t in status["trials"])
    assert trials == [f"tune-t{i}" for i in range(4)] and status["bestTrial"] == "tune-t1"
    for name in trials:
        assert len(jobs_of(cluster, namespace, name)) == 1, f"one Job for {name}"
    registry = Registry(services.endpoints["mlflow"])
    runs = registry.client.search_runs([registry.client.get_run(
        status["mlflowRunId"]).info.experiment_id])
    assert len(runs) == 5, "one MLflow run per trial and one for the sweep, none duplicated"
    assert_clean(cluster, namespace)
    record.passed = True


@pytest.mark.parametrize("trial", range(TRIALS))
def test_chaos_registration(cluster, services, runs, chaos, trial):
    """Three ModelVersions of one model registered while the operator keeps dying."""
    namespace, operator, record = chaos
    model = f"chaos-{uuid.uuid4().hex[:8]}"
    names = [f"r-{i}" for i in range(3)]

    def moment() -> str:
        return " ".join(str((get(cluster, namespace, "ModelVersion", n).get("status") or {})
                            .get("phase")) for n in names)

    with Killer(operator, record, moment, kills=3, delays=(0.3, 4.0)):
        apply_manifests(cluster, *(model_version(namespace, n, model, runs["double"])
                                   for n in names))
        done = [wait_for(lambda n=n: (o := get(cluster, namespace, "ModelVersion", n)).get(
            "status", {}).get("mlflowVersion") and o, timeout=180, message=f"{n} registered")
            for n in names]
    assert versions_of(services, model) == ["1", "2", "3"], "one MLflow version per ModelVersion"
    registry = Registry(services.endpoints["mlflow"])
    for obj in done:
        facts = registry.client.get_model_version(model, obj["status"]["mlflowVersion"])
        assert facts.tags[UID_TAG] == obj["metadata"]["uid"]
    record.passed = True


@pytest.mark.parametrize("trial", range(TRIALS))
def test_chaos_backfill(cluster, services, chaos, trial):
    namespace, operator, record = chaos
    transform = sql_transform(namespace)
    transform["sql"]["query"] = ("select cast(getvariable('ferry_interval_start') as varchar) "
                                 "as interval_start, count(*) as n from tx")

    def moment() -> str:
        backfill = (get(cluster, namespace, "FeaturePipeline", "bf").get("status") or {}).get(
            "backfill") or {}
        return f"backfill {backfill.get('succeeded', 0)}/{backfill.get('total', '?')} " \
               f"running {backfill.get('running', 0)}"

    apply_manifests(cluster, secret(namespace, upload_raw_data(services, namespace)))
    with Killer(operator, record, moment, kills=3, delays=(1.0, 10.0)):
        apply_manifests(cluster, pipeline(namespace, "bf", transform=transform, backfill={
            "from": "2026-01-01T00:00:00Z", "to": "2026-01-06T00:00:00Z", "interval": "1d",
            "parallelism": 2}))
        done = wait_for(lambda: (o := get(cluster, namespace, "FeaturePipeline", "bf")) and
                        o.get("status", {}).get("backfill", {}).get("succeeded") == 5 and o,
                        timeout=300, message="5 backfill intervals succeeded")
    assert done["status"]["backfill"]["failed"] == 0
    jobs = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(jobs) == 5, f"one Job per interval: {[j['metadata']['name'] for j in jobs]}"
    assert_clean(cluster, namespace)
    record.passed = True
