"""ModelVersion against the real MLflow server: registration, gates, approval, deletion."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from ferry.adapters.mlflow import UID_TAG, Registry
from ferry_dev.processes import free_port
from ferry_dev.services import Service
from ferry.status import find_condition
from support.cluster import create_namespace, start_operator
from support.environ import services_environment
from support.objects import apply_manifests
from support.waiting import wait_for


@pytest.fixture(scope="module")
def trained(services):
    """A real MLflow run with metrics and a pyfunc model with an input signature."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    class Doubler(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return model_input["amount"] * 2

    with services_environment(services):
        mlflow.set_tracking_uri(services.endpoints["mlflow"])
        mlflow.set_experiment("modelversion-tests")
        frame = pd.DataFrame({"amount": [1.0, 2.0], "country_code": [1, 2]})
        with mlflow.start_run() as run:
            mlflow.log_params({"depth": "4"})
            mlflow.log_metrics({"auc": 0.9, "loss": 0.2})
            mlflow.pyfunc.log_model(name="model", python_model=Doubler(),
                                    signature=infer_signature(frame, frame["amount"]))
        return run.info.run_id


@pytest.fixture(scope="module")
def trained_by_example(services, tmp_path_factory):
    """A run of the example trainer, from the command line, against the real MLflow and S3."""
    folder = tmp_path_factory.mktemp("example")
    env = os.environ | services.env()
    subprocess.run([sys.executable, "-m", "ferry.examples.data", "--rows", "1500",
                    "--out", str(folder / "features.parquet")], env=env, check=True)
    trained = subprocess.run(
        [sys.executable, "-m", "ferry.examples.trainer", "--features",
         str(folder / "features.parquet"), "--epochs", "2", "--experiment", "modelversion-example",
         "--tracking-uri", services.endpoints["mlflow"]],
        env=env, check=True, capture_output=True, text=True)
    return trained.stdout.split("mlflow run ", 1)[1].split(":", 1)[0]


def model_version(namespace, name, model, run_id, **spec):
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"modelName": model, "source": f"runs:/{run_id}/model", **spec}}


def get(cluster, namespace, name):
    return json.loads(cluster.kubectl("get", "modelversion.ferry.dev", name, "-n", namespace,
                                      "-o", "json").stdout)


def phase_is(cluster, namespace, name, phase):
    obj = get(cluster, namespace, name)
    return obj if obj.get("status", {}).get("phase") == phase else None


def condition(obj, type_):
    return find_condition(obj.get("status", {}).get("conditions"), type_) or {}


def test_registers_once_with_lineage_and_passes_gates(cluster, namespace, operator, services,
                                                      trained):
    model = f"fraud-{namespace}"
    apply_manifests(cluster, model_version(namespace, "fraud-1", model, trained, gates={
        "metrics": [{"metric": "auc", "op": ">=", "value": 0.85}], "signature": True}))
    approved = wait_for(lambda: phase_is(cluster, namespace, "fraud-1", "Approved"), timeout=90,
                        message="ModelVersion Approved")
    status = approved["status"]
    assert status["mlflowVersion"] == "1"
    assert status["lineage"]["runId"] == trained
    assert status["lineage"]["metrics"]["auc"] == 0.9
    assert status["lineage"]["parameters"] == {"depth": "4"}
    gates = {g["name"]: g for g in status["gates"]}
    assert gates["metric auc"]["verdict"] == "Passed" and gates["metric auc"]["observed"] == "0.9"
    assert gates["signature"]["observed"] == "amount,country_code"
    registry = Registry(services.endpoints["mlflow"])
    versions = registry.client.search_model_versions(f"name = '{model}'")
    assert len(versions) == 1 and versions[0].tags[UID_TAG] == approved["metadata"]["uid"]

    # Losing the status (as if the operator died before writing it) must not register twice.
    cluster.kubectl("patch", "modelversion.ferry.dev", "fraud-1", "-n", namespace,
                    "--subresource=status", "--type=merge", "-p",
                    json.dumps({"status": {"mlflowVersion": None, "phase": None}}))
    cluster.kubectl("annotate", "modelversion.ferry.dev", "fraud-1", "-n", namespace, "nudge=1")
    cluster.kubectl("patch", "modelversion.ferry.dev", "fraud-1", "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"description": "re-reconcile"}}))
    wait_for(lambda: get(cluster, namespace, "fraud-1")["status"].get("mlflowVersion") == "1",
             timeout=60, message="version found again")
    assert len(registry.client.search_model_versions(f"name = '{model}'")) == 1


def test_threshold_failure_and_beat_champion(cluster, namespace, operator, services, trained):
    model = f"churn-{namespace}"
    apply_manifests(cluster, model_version(namespace, "low", model, trained, gates={
        "metrics": [{"metric": "auc", "op": ">=", "value": 0.95}]}))
    rejected = wait_for(lambda: phase_is(cluster, namespace, "low", "Rejected"), timeout=90,
                        message="Rejected")
    gate = rejected["status"]["gates"][0]
    assert (gate["verdict"], gate["observed"], gate["threshold"]) == ("Failed", "0.9", ">= 0.95")
    assert "metric auc" in condition(rejected, "GatesPassed")["message"]

    apply_manifests(cluster, model_version(namespace, "first", model, trained,
                                 gates={"beatChampion": {"metric": "auc", "minDelta": 0.01}}))
    first = wait_for(lambda: phase_is(cluster, namespace, "first", "Approved"), timeout=90,
                     message="first Approved (no champion)")
    assert first["status"]["gates"][0]["message"] == "no champion to beat"
    registry = Registry(services.endpoints["mlflow"])
    registry.set_alias(model, "champion", first["status"]["mlflowVersion"])

    apply_manifests(cluster, model_version(namespace, "second", model, trained,
                                 gates={"beatChampion": {"metric": "auc", "minDelta": 0.01}}))
    second = wait_for(lambda: phase_is(cluster, namespace, "second", "Rejected"), timeout=90,
                      message="second Rejected (does not beat the champion by 0.01)")
    gate = second["status"]["gates"][0]
    assert gate["observed"] == "0.9" and gate["threshold"].startswith(">= 0.91")

    # A champion without the metric (here: registered from S3, no MLflow run, as an older
    # pipeline might have left it) is not compared: it does not block the next candidate.
    legacy = model_version(namespace, "legacy", model, "unused")
    legacy["spec"]["source"] = "s3://ferry/models/legacy/"
    apply_manifests(cluster, legacy)
    legacy = wait_for(lambda: phase_is(cluster, namespace, "legacy", "Approved"), timeout=90,
                      message="legacy Approved")
    registry.set_alias(model, "champion", legacy["status"]["mlflowVersion"])
    apply_manifests(cluster, model_version(namespace, "third", model, trained,
                                 gates={"beatChampion": {"metric": "auc", "minDelta": 0.01}}))
    third = wait_for(lambda: phase_is(cluster, namespace, "third", "Approved"), timeout=90,
                     message="third Approved (the champion has no auc)")
    gate = third["status"]["gates"][0]
    version = legacy["status"]["mlflowVersion"]
    assert (gate["verdict"], gate["observed"]) == ("Passed", "0.9")
    assert gate["message"] == f"champion v{version} has no metric 'auc'; not compared"
    assert "not compared" in condition(third, "GatesPassed")["message"]


def test_approval_is_required_recorded_and_audited(cluster, namespace, operator, services, trained):
    model = f"gated-{namespace}"
    apply_manifests(cluster, model_version(namespace, "needs-ok", model, trained,
                                 approval={"required": True}))
    wait_for(lambda: phase_is(cluster, namespace, "needs-ok", "AwaitingApproval"), timeout=90,
             message="AwaitingApproval")
    subprocess.run([sys.executable, "-m", "ferry", "approve", "mv/needs-ok", "--by", "alice",
                    "--comment", "looks good", "-n", namespace, "--kubeconfig",
                    cluster.kubeconfig], check=True)
    approved = wait_for(lambda: phase_is(cluster, namespace, "needs-ok", "Approved"), timeout=60,
                        message="Approved")
    record = approved["status"]["approval"]
    assert record["by"] == "alice" and record["comment"] == "looks good" and record["at"]
    tags = Registry(services.endpoints["mlflow"]).client.get_model_version(
        model, approved["status"]["mlflowVersion"]).tags
    assert tags["ferry.dev/approved-by"] == "alice"
    assert tags["ferry.dev/approval-comment"] == "looks good"
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                             "reason=Approved").stdout
    assert "alice" in events


def test_served_version_cannot_be_deleted_and_delete_policy_removes_it(cluster, namespace,
                                                                        operator, services,
                                                                        trained):
    model = f"served-{namespace}"
    service = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
               "metadata": {"name": "api", "namespace": namespace},
               "spec": {"model": {"modelVersion": "served"}}}
    apply_manifests(cluster, model_version(namespace, "served", model, trained, deletionPolicy="Delete"),
          model_version(namespace, "kept", model, trained), service)
    serving = wait_for(lambda: phase_is(cluster, namespace, "served", "Serving"), timeout=90,
                       message="Serving")
    assert serving["status"]["servedBy"] == ["InferenceService/api"]
    kept = wait_for(lambda: phase_is(cluster, namespace, "kept", "Approved"), timeout=90,
                    message="kept Approved")
    cluster.kubectl("delete", "modelversion.ferry.dev", "served", "-n", namespace, "--wait=false")
    held = wait_for(lambda: (o := get(cluster, namespace, "served")) and
                    condition(o, "InUse").get("reason") == "DeletionBlocked" and o,
                    timeout=60, message="deletion held")
    assert "InferenceService/api" in condition(held, "InUse")["message"]
    cluster.kubectl("delete", "inferenceservice.ferry.dev", "api", "-n", namespace)
    wait_for(lambda: cluster.kubectl("get", "modelversion.ferry.dev", "served", "-n", namespace,
                                     check=False).returncode != 0, timeout=60,
             message="served deleted")
    cluster.kubectl("delete", "modelversion.ferry.dev", "kept", "-n", namespace)
    registry = Registry(services.endpoints["mlflow"])
    remaining = {v.version for v in registry.client.search_model_versions(f"name = '{model}'")}
    assert remaining == {kept["status"]["mlflowVersion"]}  # Delete removed, Retain kept


def test_unreachable_registry_is_reported_then_registers_once(cluster, services, trained,
                                                              tmp_path):
    namespace = create_namespace(cluster, "mlf")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = services.env() | {"FERRY_MLFLOW_URI": uri, "FERRY_LEASE_NAME": f"ferry-{namespace}"}
    operator = start_operator(cluster, tmp_path, namespace, **env)
    late = Service("mlflow-late", tmp_path, [
        str(os.path.join(os.path.dirname(sys.executable), "mlflow")), "server", "--host",
        "127.0.0.1", "--port", str(port), "--backend-store-uri",
        f"sqlite:///{tmp_path / 'late.db'}", "--workers", "1"],
        env={"MLFLOW_DISABLE_TELEMETRY": "true"}, ready_url=f"{uri}/health")
    try:
        model = f"late-{uuid.uuid4().hex[:6]}"
        late_version = model_version(namespace, "late", model, "unused")
        late_version["spec"]["source"] = "s3://ferry/models/late/"
        apply_manifests(cluster, late_version)
        down = wait_for(lambda: (o := get(cluster, namespace, "late")) and
                        condition(o, "RegistryReachable").get("status") == "False" and o,
                        timeout=60, message="RegistryReachable=False")
        assert condition(down, "RegistryReachable")["reason"] == "RegistryUnavailable"
        late.start()
        wait_for(lambda: condition(get(cluster, namespace, "late"), "Registered").get("status")
                 == "True", timeout=120, message="registered once MLflow is back")
        versions = Registry(uri).client.search_model_versions(f"name = '{model}'")
        assert len(versions) == 1
    finally:
        late.stop()
        operator.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_source_run_mlflow_does_not_know_is_reported_not_crashed(cluster, namespace, operator):
    apply_manifests(cluster, model_version(namespace, "ghost", f"ghost-{namespace}", "0000deadbeef"))
    failed = wait_for(lambda: (o := get(cluster, namespace, "ghost")) and
                      condition(o, "Registered").get("reason") == "RegistrationFailed" and o,
                      timeout=60, message="Registered=False/RegistrationFailed")
    assert "0000deadbeef" in condition(failed, "Registered")["message"]
    assert "RegistrationFailed" in cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=RegistrationFailed").stdout


def test_killed_between_registration_and_status_write_registers_once(cluster, services,
                                                                     trained_by_example, tmp_path):
    """The operator dies right after MLflow created the version of a model the example trainer
    trained, before status recorded it."""
    namespace = create_namespace(cluster, "crash")
    env = services.env() | {"FERRY_LEASE_NAME": f"ferry-{namespace}",
                            "FERRY_LEASE_DURATION_SECONDS": "3", "FERRY_RETRY_PERIOD_SECONDS": "1",
                            "FERRY_RENEW_DEADLINE_SECONDS": "2"}
    model = f"crash-{namespace}"
    doomed = start_operator(cluster, tmp_path, namespace,
                            FERRY_FAILPOINTS="modelversion.registered", **env)
    survivor = None
    try:
        apply_manifests(cluster, model_version(namespace, "fraud-1", model, trained_by_example, gates={
            "metrics": [{"metric": "auc", "op": ">", "value": 0.5}], "signature": True}))
        wait_for(lambda: doomed.process.poll() is not None, timeout=90,
                 message="operator killed at the failpoint")
        assert doomed.process.returncode == 137
        registry = Registry(services.endpoints["mlflow"])
        assert len(registry.client.search_model_versions(f"name = '{model}'")) == 1
        assert "mlflowVersion" not in get(cluster, namespace, "fraud-1").get("status", {})

        survivor = start_operator(cluster, tmp_path, namespace, **env)
        approved = wait_for(lambda: phase_is(cluster, namespace, "fraud-1", "Approved"),
                            timeout=90, message="Approved after the restart")
        versions = registry.client.search_model_versions(f"name = '{model}'")
        assert [v.version for v in versions] == [approved["status"]["mlflowVersion"]] == ["1"]
        assert versions[0].tags[UID_TAG] == approved["metadata"]["uid"]
        assert approved["status"]["lineage"]["runId"] == trained_by_example
        assert {g["name"]: g["verdict"] for g in approved["status"]["gates"]} == {
            "metric auc": "Passed", "signature": "Passed"}
    finally:
        if survivor:
            survivor.stop()
        doomed.stop()
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
