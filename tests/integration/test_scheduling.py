"""KWOK simulated nodes: GPU capacity is scheduled like on a real cluster, Job pods take time, so a
distributed TrainingRun counts as scheduled only when all its workers run at once."""

from __future__ import annotations

import json
from datetime import datetime

import yaml

from ferry_dev.kwokstages import run_seconds_default
from ferry.status import find_condition
from support.cluster import IMAGE
from support.waiting import wait_for


def gpu_pod(name: str, gpus: int) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            # Pod Security "restricted", which the test namespaces enforce.
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "main", "image": IMAGE, "command": ["train"],
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                            "securityContext": {"allowPrivilegeEscalation": False,
                                                "capabilities": {"drop": ["ALL"]}}}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def get_pod(cluster, namespace, name) -> dict:
    return json.loads(cluster.kubectl("get", "pod", name, "-n", namespace, "-o", "json").stdout)


def test_gpu_pod_runs_on_a_kwok_gpu_node(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(gpu_pod("one", 1)))
    pod = wait_for(lambda: (p := get_pod(cluster, namespace, "one"))["status"].get("phase")
                   == "Running" and p, timeout=60, message="GPU pod Running")
    node = json.loads(cluster.kubectl("get", "node", pod["spec"]["nodeName"], "-o", "json").stdout)
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"


def test_pod_asking_for_more_gpus_than_any_node_stays_unschedulable(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(gpu_pod("big", 64)))

    def unschedulable():
        status = get_pod(cluster, namespace, "big")["status"]
        return any(c["type"] == "PodScheduled" and c["status"] == "False"
                   and c.get("reason") == "Unschedulable" for c in status.get("conditions", []))

    wait_for(unschedulable, timeout=60, message="PodScheduled=False/Unschedulable")
    pod = get_pod(cluster, namespace, "big")
    assert pod["status"]["phase"] == "Pending"
    assert "nvidia.com/gpu" in next(c["message"] for c in pod["status"]["conditions"]
                                    if c["type"] == "PodScheduled")


# --- KWOK Job pods take time ---------------------------------------------------------------------

RUN_SECONDS = "ferry.dev/kwok-run-seconds"
DEFAULT_RUN_SECONDS = run_seconds_default()  # what the session cluster's stages were given


def kwok_job(name: str, annotations: dict | None = None) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {**gpu_pod(name, 1)["spec"], "restartPolicy": "Never"}}}}


def pods_of(cluster, namespace, job) -> list[dict]:
    return json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                      f"batch.kubernetes.io/job-name={job}", "-o",
                                      "json").stdout)["items"]


def seconds(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_a_kwok_job_pod_runs_for_its_annotated_time_and_else_for_the_default(cluster, namespace):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([
        kwok_job("short", {RUN_SECONDS: "3"}), kwok_job("default")]))
    short = wait_for(lambda: (p := pods_of(cluster, namespace, "short")) and
                     p[0]["status"].get("phase") == "Succeeded" and p[0], timeout=60,
                     message="the annotated pod Succeeded")
    finished = short["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]
    assert seconds(finished) - seconds(short["status"]["startTime"]) >= 3
    [default] = pods_of(cluster, namespace, "default")
    assert default["status"]["phase"] == "Running", "the default run time is longer"
    done = wait_for(lambda: (p := pods_of(cluster, namespace, "default")) and
                    p[0]["status"].get("phase") == "Succeeded" and p[0],
                    timeout=DEFAULT_RUN_SECONDS + 30, message="the default pod Succeeded")
    ran = seconds(done["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"]) - \
        seconds(done["status"]["startTime"])
    assert DEFAULT_RUN_SECONDS <= ran < DEFAULT_RUN_SECONDS + 10


def gpus_in_use(cluster) -> int:
    """GPUs that pods on the KWOK GPU nodes hold now (pods of earlier tests may linger)."""
    pods = json.loads(cluster.kubectl("get", "pods", "-A", "-o", "json").stdout)["items"]
    return sum(int(c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0))
               for p in pods if (p["spec"].get("nodeName") or "").startswith("kwok-gpu-")
               and p["status"].get("phase") not in ("Succeeded", "Failed")
               for c in p["spec"]["containers"])


def gang_run(namespace: str, name: str, workers: int, timeout: str) -> dict:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": IMAGE, "command": ["train"], "workers": workers,
                     "resources": {"gpus": 8}, "schedulingTimeout": timeout}}


def training_run(cluster, namespace, name) -> dict:
    return json.loads(cluster.kubectl("get", "trainingrun.ferry.dev", name, "-n", namespace,
                                      "-o", "json").stdout)


def event_reasons(cluster, namespace, name) -> list[str]:
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                        f"involvedObject.name={name}", "-o", "json").stdout)
    return [e["reason"] for e in events["items"]]


def test_three_workers_of_eight_gpus_on_two_nodes_of_eight_fail_at_the_scheduling_timeout(
        cluster, namespace, operator):
    """Two workers run, the third waits; when the two finish it gets their GPUs and runs alone.
    Before the timeout (longer than a KWOK run) that must not count as scheduled, and the run
    fails with InsufficientGPU instead of succeeding."""
    wait_for(lambda: gpus_in_use(cluster) == 0, timeout=60, message="the GPU nodes are free")
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
        gang_run(namespace, "big", workers=3, timeout=f"{DEFAULT_RUN_SECONDS + 10}s")))
    seen = {"scheduled": set(), "alone": False}

    def finished():
        run = training_run(cluster, namespace, "big")
        status = run.get("status") or {}
        scheduled = find_condition(status.get("conditions"), "Scheduled")
        if scheduled:
            seen["scheduled"].add((scheduled["status"], scheduled["reason"]))
        pods = pods_of(cluster, namespace, "big")
        phases = sorted(p["status"].get("phase") for p in pods)
        seen["alone"] |= phases == ["Running", "Succeeded", "Succeeded"]
        return status if status.get("phase") in ("Succeeded", "Failed") else None

    done = wait_for(finished, timeout=DEFAULT_RUN_SECONDS * 3 + 30, interval=0.5,
                    message="the 3 x 8 GPU run finished")
    assert done["phase"] == "Failed", done.get("message")
    assert find_condition(done["conditions"], "Succeeded")["reason"] == "InsufficientGPU"
    assert f"not all workers scheduled within {DEFAULT_RUN_SECONDS + 10}s" in done["message"]
    assert seen["alone"], "the third worker ran after the other two (the case under test)"
    assert ("True", "Scheduled") not in seen["scheduled"]
    assert ("False", "InsufficientGPU") in seen["scheduled"]
    assert find_condition(done["conditions"], "Scheduled")["status"] == "False"
    reasons = event_reasons(cluster, namespace, "big")
    assert "InsufficientGPU" in reasons and "Scheduled" not in reasons
    job = json.loads(cluster.kubectl("get", "job", "big", "-n", namespace, "-o", "json").stdout)
    assert job["spec"]["suspend"] and \
        job["metadata"]["annotations"]["ferry.dev/gave-up"].startswith("InsufficientGPU")


def test_two_workers_of_eight_gpus_on_two_nodes_of_eight_run_together_and_succeed(
        cluster, namespace, operator):
    wait_for(lambda: gpus_in_use(cluster) == 0, timeout=60, message="the GPU nodes are free")
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(
        gang_run(namespace, "pair", workers=2, timeout="60s")))

    def scheduled():
        status = training_run(cluster, namespace, "pair").get("status") or {}
        found = find_condition(status.get("conditions"), "Scheduled")
        return found if found and found["status"] == "True" else None

    placed = wait_for(scheduled, timeout=60, message="Scheduled=True")
    assert placed["message"] == "All 2 workers are placed at the same time."
    pods = pods_of(cluster, namespace, "pair")
    assert [p["status"].get("phase") for p in pods] == ["Running", "Running"]
    assert {p["spec"]["nodeName"] for p in pods} == {"kwok-gpu-0", "kwok-gpu-1"}
    done = wait_for(lambda: (s := training_run(cluster, namespace, "pair")["status"])
                    .get("phase") in ("Succeeded", "Failed") and s,
                    timeout=DEFAULT_RUN_SECONDS + 60, message="the 2 x 8 GPU run finished")
    assert done["phase"] == "Succeeded", done.get("message")
    assert find_condition(done["conditions"], "Scheduled")["status"] == "True"
