"""KWOK simulated nodes: GPU capacity is scheduled like on a real cluster."""

from __future__ import annotations

import json

import yaml

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
