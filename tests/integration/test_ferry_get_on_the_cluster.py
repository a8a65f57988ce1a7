"""``ferry get`` against the real control plane: a served InferenceService and its ModelVersion."""

from __future__ import annotations

import json
import subprocess
import sys

from support.objects import apply_manifests
from support.waiting import wait_for
from support.rollouts import healthy_on, inference_service, model_version, registered


def ferry_get(cluster, namespace, target):
    done = subprocess.run([sys.executable, "-m", "ferry", "get", target, "-n", namespace,
                           "--kubeconfig", cluster.kubeconfig], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout


def ready_pods(cluster, namespace, name):
    items = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                       f"ferry.dev/inferenceservice={name}", "-o", "json").stdout)["items"]
    return sorted(p["metadata"]["name"] for p in items
                  if all(c.get("ready") for c in p["status"].get("containerStatuses") or [{}]))


def test_get_shows_the_stable_version_its_deployment_and_ready_pods(cluster, namespace, operator, runs):
    model = f"get-{namespace}"
    apply_manifests(cluster, model_version(namespace, "get-1", model, runs["double"]))
    registered(cluster, namespace, "get-1", "1")
    apply_manifests(cluster, inference_service(namespace, "get", {"modelVersion": "get-1"}, replicas=2))
    healthy_on(cluster, namespace, "get", "get-1")
    pods = wait_for(lambda: len(found := ready_pods(cluster, namespace, "get")) == 2 and found,
                    timeout=60, message="two ready serving pods")

    text = wait_for(lambda: "ready 2/2" in (out := ferry_get(cluster, namespace, "infsvc/get")) and out,
                    timeout=30, message="ferry get sees both replicas ready")
    lines = text.splitlines()
    assert "Phase:     Healthy" in lines
    assert f"Stable:    get-1  ({model} v1)" in lines
    assert "Candidate:" not in text
    root = lines.index("InferenceService get  Healthy")
    assert lines[root + 1] == "`-- Deployment get-get-1  stable  get-1 (v1)  ready 2/2"
    for pod in pods:
        assert any(line.endswith(f"Pod {pod}  Running  ready 1/1") for line in lines[root + 2:]), text

    served = ferry_get(cluster, namespace, "modelversion/get-1")
    assert f"MLflow:    {model} version 1" in served
    assert "Approval:  not required" in served
