"""TrainingRun on the real control plane: GPU placement, real training on the real node,
MLflow tracking, failure policy and cleanup."""

from __future__ import annotations

import json

import pytest

from ferry.adapters.mlflow import Registry
from ferry_dev.kwokstages import run_seconds_default
from ferry.status import find_condition
from support.cluster import IMAGE
from support.objects import apply_manifests, get_resource, phase_reached
from support.waiting import wait_for

TRAIN = """
import json, os, mlflow
params = json.load(open(os.environ['FERRY_PARAMETERS_FILE']))
client = mlflow.tracking.MlflowClient()
run = os.environ['MLFLOW_RUN_ID']
lr = float(params['lr'])
for step in range(3):
    client.log_metric(run, 'loss', 1.0 / (step + 1) * lr, step=step)
client.log_metric(run, 'auc', 0.8 + lr)
client.log_param(run, 'lr', params['lr'])
"""


def training_run(namespace, name, **spec):
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": IMAGE, **spec}}


def run_phase(cluster, namespace, name, phase):
    return phase_reached(get_resource(cluster, namespace, "trainingrun.ferry.dev", name), phase)


def credentials(namespace, services) -> dict:
    env = services.env()
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "mlflow-creds", "namespace": namespace},
            "stringData": {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                               "AWS_DEFAULT_REGION", "MLFLOW_S3_ENDPOINT_URL")}}


def test_gpu_run_gets_limits_toleration_shm_and_lands_on_a_gpu_node(cluster, namespace, operator,
                                                                    services):
    apply_manifests(cluster, training_run(namespace, "gpu", command=["train"], resources={"gpus": 2},
                                shmSize="1Gi", parameters={"lr": "0.1"}))
    # The KWOK pod runs for the cluster's default KWOK run time before it completes.
    done = wait_for(lambda: run_phase(cluster, namespace, "gpu", "Succeeded"),
                    timeout=90 + run_seconds_default(),
                    message="GPU run Succeeded on a KWOK GPU node")
    job = get_resource(cluster, namespace, "job", "gpu")
    pod_spec = job["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in \
        pod_spec["tolerations"]
    shm = next(v for v in pod_spec["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLFLOW_RUN_ID"] == done["status"]["mlflowRunId"]
    assert json.loads(env["FERRY_PARAMETERS"]) == {"lr": "0.1"}
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                      "batch.kubernetes.io/job-name=gpu", "-o", "json").stdout)
    node = pods["items"][0]["spec"]["nodeName"]
    assert node.startswith("kwok-gpu-")
    assert done["status"]["gpus"] == 2
    mlflow_run = Registry(services.endpoints["mlflow"]).client.get_run(done["status"]["mlflowRunId"])
    assert mlflow_run.info.status == "FINISHED"


def test_more_gpus_than_the_cluster_has_fails_with_insufficient_gpu(cluster, namespace, operator):
    apply_manifests(cluster, training_run(namespace, "huge", command=["train"], resources={"gpus": 64},
                                schedulingTimeout="5s"))
    failed = wait_for(lambda: run_phase(cluster, namespace, "huge", "Failed"), timeout=90,
                      message="run Failed")
    succeeded = find_condition(failed["status"]["conditions"], "Succeeded")
    assert succeeded["reason"] == "InsufficientGPU"
    assert "nvidia.com/gpu" in failed["status"]["message"]
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                             "reason=InsufficientGPU").stdout
    assert "InsufficientGPU" in events
    job = wait_for(lambda: (j := get_resource(cluster, namespace, "job", "huge"))["spec"].get("suspend")
                   and j, timeout=30, message="the unschedulable Job is suspended")
    assert job["metadata"]["annotations"]["ferry.dev/gave-up"].startswith("InsufficientGPU")
    wait_for(lambda: not json.loads(cluster.kubectl(
        "get", "pods", "-n", namespace, "-l", "batch.kubernetes.io/job-name=huge", "-o",
        "json").stdout)["items"], timeout=60, message="pending workers removed")
    assert run_phase(cluster, namespace, "huge", "Failed")


def test_training_on_the_local_runner_is_tracked_in_mlflow(cluster, namespace, operator,
                                                          services):
    apply_manifests(cluster, credentials(namespace, services),
          training_run(namespace, "real", command=["python", "-c", TRAIN],
                       parameters={"lr": "0.05"}, mlflow={"experiment": f"exp-{namespace}"},
                       env=[{"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {
                           "name": "mlflow-creds", "key": "AWS_ACCESS_KEY_ID"}}}]))
    done = wait_for(lambda: run_phase(cluster, namespace, "real", "Succeeded"), timeout=120,
                    message="real training Succeeded")
    registry = Registry(services.endpoints["mlflow"])
    mlflow_run = registry.client.get_run(done["status"]["mlflowRunId"])
    assert mlflow_run.info.status == "FINISHED"
    assert mlflow_run.data.tags["ferry.dev/name"] == "real"
    assert done["status"]["metrics"] == mlflow_run.data.metrics
    assert done["status"]["metrics"]["auc"] == pytest.approx(0.85)
    assert find_condition(done["status"]["conditions"], "Succeeded")["status"] == "True"


def test_exit_codes_retry_then_fail_and_non_retryable_fail_at_once(cluster, namespace, operator):
    apply_manifests(cluster,
          training_run(namespace, "flaky", command=["python", "-c", "import sys; sys.exit(1)"],
                       backoffLimit=1),
          training_run(namespace, "fatal", command=["python", "-c", "import sys; sys.exit(2)"],
                       backoffLimit=3, nonRetryableExitCodes=[2]))
    flaky = wait_for(lambda: run_phase(cluster, namespace, "flaky", "Failed"), timeout=120,
                     message="flaky Failed after retries")
    assert find_condition(flaky["status"]["conditions"], "Succeeded")["reason"] == \
        "BackoffLimitExceeded"
    assert flaky["status"]["attempts"] == 2
    fatal = wait_for(lambda: run_phase(cluster, namespace, "fatal", "Failed"), timeout=120,
                     message="fatal Failed at once")
    assert find_condition(fatal["status"]["conditions"], "Succeeded")["reason"] == \
        "PodFailurePolicy"
    assert fatal["status"]["attempts"] == 1
    assert "exit codes [2]" in fatal["status"]["message"]


def test_deleting_a_run_removes_its_job_and_kills_the_mlflow_run(cluster, namespace, operator,
                                                                services):
    apply_manifests(cluster, training_run(namespace, "long",
                                command=["python", "-c", "import time; time.sleep(300)"]))
    running = wait_for(lambda: run_phase(cluster, namespace, "long", "Running"), timeout=90,
                       message="Running")
    run_id = running["status"]["mlflowRunId"]
    cluster.kubectl("delete", "trainingrun.ferry.dev", "long", "-n", namespace)
    wait_for(lambda: cluster.kubectl("get", "job", "long", "-n", namespace,
                                     check=False).returncode != 0, timeout=60,
             message="Job garbage-collected")
    registry = Registry(services.endpoints["mlflow"])
    assert registry.client.get_run(run_id).info.status == "KILLED"


def test_killing_the_operator_mid_run_creates_no_second_job_or_mlflow_run(cluster, services,
                                                                          tmp_path):
    import signal

    from support.cluster import create_namespace, start_operator

    namespace = create_namespace(cluster, "tr")
    env = services.env() | {"FERRY_LEASE_NAME": f"ferry-{namespace}",
                            "FERRY_LEASE_DURATION_SECONDS": "3", "FERRY_RETRY_PERIOD_SECONDS": "1",
                            "FERRY_RENEW_DEADLINE_SECONDS": "2"}
    first = start_operator(cluster, tmp_path, namespace, **env)
    try:
        apply_manifests(cluster, training_run(namespace, "steady", mlflow={"experiment": f"kill-{namespace}"},
                                    command=["python", "-c", "import time; time.sleep(300)"]))
        running = wait_for(lambda: run_phase(cluster, namespace, "steady", "Running"),
                           timeout=90, message="Running")
        first.stop(signal.SIGKILL)
        # Forget what the operator wrote, as if it died before its status patch landed.
        cluster.kubectl("patch", "trainingrun.ferry.dev", "steady", "-n", namespace,
                        "--subresource=status", "--type=merge", "-p",
                        json.dumps({"status": {"mlflowRunId": None, "phase": None}}))
        second = start_operator(cluster, tmp_path, namespace, **env)
        try:
            again = wait_for(lambda: run_phase(cluster, namespace, "steady", "Running"),
                             timeout=90, message="Running again under the new operator")
            assert again["status"]["mlflowRunId"] == running["status"]["mlflowRunId"]
            jobs = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o",
                                              "json").stdout)["items"]
            assert [j["metadata"]["name"] for j in jobs] == ["steady"]
            registry = Registry(services.endpoints["mlflow"])
            experiment = registry.client.get_experiment_by_name(f"kill-{namespace}")
            runs = registry.client.search_runs([experiment.experiment_id])
            assert len(runs) == 1
        finally:
            second.stop()
    finally:
        first.stop(signal.SIGKILL)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_a_run_needing_root_opts_out_to_baseline_and_waits_for_a_namespace_admitting_it(
        cluster, namespace, operator):
    """``podSecurity: baseline`` in a namespace enforcing ``restricted`` (the test namespaces):
    admission would refuse its pods, so no Job is created and the run says why; once the
    namespace admits baseline pods the run starts and succeeds."""
    apply_manifests(cluster, training_run(namespace, "rooted", podSecurity="baseline",
                                          command=["python", "-c", "pass"]))
    held = wait_for(lambda: (o := get_resource(cluster, namespace, "trainingrun.ferry.dev",
                                               "rooted")).get("status", {}).get("message") and o,
                    timeout=60, message="the run says why it waits")
    succeeded = find_condition(held["status"]["conditions"], "Succeeded")
    assert succeeded["reason"] == "PodSecurityForbidden" and held["status"]["phase"] == "Pending"
    assert "enforces Pod Security restricted" in succeeded["message"]
    assert not json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)[
        "items"]
    # What the operator spared the Job: admission refuses such a pod in this namespace.
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe", "namespace": namespace},
           "spec": {"containers": [{"name": "c", "image": IMAGE}],
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}}
    refused = cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(pod),
                              check=False)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr
    assert "PodSecurityForbidden" in cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=PodSecurityForbidden").stdout

    cluster.kubectl("label", "namespace", namespace, "--overwrite",
                    "pod-security.kubernetes.io/enforce=baseline")
    wait_for(lambda: phase_reached(get_resource(cluster, namespace, "trainingrun.ferry.dev",
                                                "rooted"), "Succeeded"),
             timeout=150, message="the run starts once the namespace admits baseline pods")
