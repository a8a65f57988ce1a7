"""KWOK simulated nodes: GPU capacity is scheduled like on a real cluster, and Job pods take time."""

from __future__ import annotations

import json
from datetime import datetime

import yaml

from ferry.dev.kwokstages import run_seconds_default
from support.waiting import wait_for


def gpu_pod(name: str, gpus: int) -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {
            "containers": [{"name": "main", "image": "trainer:latest", "command": ["train"],
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
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
