"""The closed loop end to end on the real control plane, MLflow and S3 (issue 6, acceptance 4):
a served model, shifted traffic logged by ``ferry serve``, the drift monitor's Job reports drift,
the operator starts a retraining TrainingRun (trigger recorded), its ModelVersion passes its gates,
the ``latestApproved`` InferenceService canaries and promotes it — and a second drift report
inside the cooldown starts nothing; removing ``spec.monitoring.drift`` removes the monitor."""

from __future__ import annotations

import json

import requests

from ferry.examples import data as synthetic
from ferry.reconcilers.retrain import FEATURES_ANNOTATION, REPORT_ANNOTATION
from support.objects import apply_manifests, get_resource
from support.serving import service_address
from support.rollouts import event_reasons
from support.waiting import wait_for
from test_drift_monitor import job_finished, pod_log
from test_example_trainer import credentials, example_run, features, phase

__all__ = ["features"]  # the fixture: synthetic transactions in S3

SERVICE = "fraud"
TRAFFIC_ROWS = 400


def trainer_spec(namespace: str, features_uri: str, model: str) -> dict:
    """The example trainer, registering into ``model`` through gates a trained model passes."""
    return {**example_run(namespace, "template", features_uri,
                          parameters={"epochs": "2", "seed": "1"})["spec"],
            "register": {"modelName": model,
                         "gates": {"metrics": [{"metric": "auc", "op": ">=", "value": 0.6}]}}}


def inference_service(namespace: str, model: str, features_uri: str) -> dict:
    secret_env = example_run(namespace, "template", features_uri)["spec"]["env"]
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": SERVICE, "namespace": namespace},
            "spec": {"model": {"modelName": model, "policy": "latestApproved"},
                     "runtime": {"env": [*secret_env, {"name": "FERRY_PREDICTION_LOG_FLUSH_SECONDS",
                                                       "value": "1"}]},
                     "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
                     "predictionLogging": {"sampleRate": 1.0},
                     "monitoring": {"drift": {
                         "schedule": "0 0 1 1 *", "window": "1h", "minRows": 50,
                         "exclude": [synthetic.TARGET], "driftShare": 0.2,
                         "reference": features_uri,
                         "onDrift": {"retrain": {
                             "template": trainer_spec(namespace, features_uri, model),
                             "cooldown": "1h"}}}}}}


def status(cluster, namespace: str) -> dict:
    return get_resource(cluster, namespace, "inferenceservice.ferry.dev", SERVICE).get("status") or {}


def send_shifted_traffic(cluster, namespace: str) -> None:
    table = synthetic.transactions(TRAFFIC_ROWS, seed=5, drift=2.0).to_pandas()
    columns = synthetic.feature_names()
    address = service_address(cluster.api_client, namespace, SERVICE)  # through kube-proxy
    for chunk in range(0, TRAFFIC_ROWS, 100):
        body = {"dataframe_split": {"columns": columns,
                                    "data": table[columns][chunk:chunk + 100].values.tolist()}}
        response = requests.post(f"http://{address}/invocations", json=body, timeout=10)
        assert response.status_code == 200, response.text


def logged_rows(services, namespace: str) -> int:
    bucket = services.env()["FERRY_S3_BUCKET"]
    listed = services.s3_client().list_objects_v2(Bucket=bucket,
                                                  Prefix=f"predictions/{namespace}/{SERVICE}/")
    return len(listed.get("Contents", []))


def run_monitor(cluster, namespace: str, job: str) -> dict:
    """Run the monitor now (a Job from its CronJob) and return the drift summary it wrote."""
    cluster.kubectl("create", "job", f"--from=cronjob/{SERVICE}-drift", job, "-n", namespace)
    outcome = wait_for(lambda: job_finished(cluster, namespace, job), timeout=180,
                       message=f"drift Job {job} finished")
    assert outcome == "Complete", pod_log(cluster, namespace, job)
    drift = status(cluster, namespace)["drift"]
    assert drift["runId"] == job
    return drift


def test_drift_retrains_gates_and_rolls_out_the_new_model_and_the_cooldown_holds(
        services, cluster, namespace, operator, features):
    model = f"fraud-{namespace}"
    apply_manifests(cluster, credentials(namespace, services),
          {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
           "metadata": {"name": "v1", "namespace": namespace},
           "spec": trainer_spec(namespace, features, model)})
    wait_for(lambda: phase(cluster, namespace, "v1", "Succeeded"), timeout=360,
             message="TrainingRun v1 Succeeded")
    first = f"{model}-v1"
    wait_for(lambda: get_resource(cluster, namespace, "modelversion.ferry.dev", first)["status"]
             .get("phase") == "Approved", timeout=60, message=f"{first} Approved")

    apply_manifests(cluster, inference_service(namespace, model, features))
    wait_for(lambda: (s := status(cluster, namespace)).get("phase") == "Healthy"
             and s.get("stableVersion") == first, timeout=240, message="v1 served")
    monitor = next(c for c in status(cluster, namespace)["conditions"]
                   if c["type"] == "DriftMonitor")
    assert monitor["status"] == "True" and monitor["reason"] == "Scheduled"

    send_shifted_traffic(cluster, namespace)
    wait_for(lambda: logged_rows(services, namespace) > 0, timeout=60,
             message="prediction log objects in S3")

    drift = run_monitor(cluster, namespace, "drift-1")
    assert drift["verdict"] == "Drifted"
    assert set(synthetic.feature_names()[:5]) <= set(drift["driftedFeatures"])

    # Drift -> a retraining run, the trigger recorded on the run, in status and as an Event.
    retrain_run = f"{SERVICE}-retrain-1"
    record = wait_for(lambda: (r := status(cluster, namespace).get("retrain") or {})
                      .get("decision") and r, timeout=60, message="retraining decided")
    assert record["decision"] == "Triggered" and record["lastRun"] == retrain_run
    assert record["reportUri"] == drift["reportUri"] and record["count"] == 1
    run = get_resource(cluster, namespace, "trainingrun.ferry.dev", retrain_run)
    annotations = run["metadata"]["annotations"]
    assert annotations[REPORT_ANNOTATION] == drift["reportUri"]
    assert set(json.loads(annotations[FEATURES_ANNOTATION])) == set(drift["driftedFeatures"])
    assert run["metadata"]["labels"]["ferry.dev/inferenceservice"] == SERVICE
    assert "RetrainTriggered" in event_reasons(cluster, namespace, SERVICE)

    # The run registers v2 through its gates; latestApproved canaries and promotes it.
    wait_for(lambda: phase(cluster, namespace, retrain_run, "Succeeded"), timeout=360,
             message=f"{retrain_run} Succeeded")
    second = f"{model}-{retrain_run}"
    approved = wait_for(lambda: (mv := get_resource(cluster, namespace, "modelversion.ferry.dev", second))
                        ["status"].get("phase") in ("Approved", "Serving") and mv, timeout=60,
                        message=f"{second} Approved")
    assert approved["status"]["mlflowVersion"] == "2"
    promoted = wait_for(lambda: (s := status(cluster, namespace)).get("stableVersion") == second
                        and s.get("phase") == "Healthy" and s, timeout=240,
                        message=f"{second} promoted")
    assert promoted["rollout"]["stable"]["mlflowVersion"] == "2"
    reasons = event_reasons(cluster, namespace, SERVICE)
    assert {"RolloutStarted", "StepCompleted", "Promoted"} <= set(reasons), reasons

    # A second drift report inside the cooldown: decided (Cooldown), no second run.
    again = run_monitor(cluster, namespace, "drift-2")
    assert again["verdict"] == "Drifted" and again["reportUri"] != drift["reportUri"]
    record = wait_for(lambda: (r := status(cluster, namespace)["retrain"])["reportUri"]
                      == again["reportUri"] and r, timeout=60, message="second report decided")
    assert record["decision"] == "Cooldown" and record["count"] == 1
    assert record["lastRun"] == retrain_run
    runs = json.loads(cluster.kubectl("get", "trainingruns.ferry.dev", "-n", namespace, "-l",
                                      f"ferry.dev/inferenceservice={SERVICE}", "-o",
                                      "json").stdout)["items"]
    assert [r["metadata"]["name"] for r in runs] == [retrain_run]
    assert "RetrainSuppressed" in event_reasons(cluster, namespace, SERVICE)

    # Monitoring removed: the monitor's children and its condition go, the served model stays.
    cluster.kubectl("patch", "inferenceservice.ferry.dev", SERVICE, "-n", namespace,
                    "--type=merge", "-p", json.dumps({"spec": {"monitoring": {"drift": None}}}))
    children = ("cronjob", "serviceaccount", "role.rbac.authorization.k8s.io",
                "rolebinding.rbac.authorization.k8s.io")
    wait_for(lambda: all(not cluster.kubectl("get", kind, f"{SERVICE}-drift", "-n", namespace,
                                             "--ignore-not-found", "-o", "name").stdout.strip()
                         for kind in children), timeout=60, message="drift monitor removed")
    after = wait_for(lambda: (s := status(cluster, namespace)) and all(
        c["type"] != "DriftMonitor" for c in s["conditions"]) and s, timeout=30,
        message="DriftMonitor condition removed")
    assert after["stableVersion"] == second and after["phase"] == "Healthy"
    assert "DriftMonitorRemoved" in event_reasons(cluster, namespace, SERVICE)
