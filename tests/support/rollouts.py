"""InferenceService rollouts in tests: the objects, their status and what MLflow says."""

from __future__ import annotations

import json
import subprocess
import sys

from ferry.adapters.mlflow import Registry
from support.objects import get_resource
from support.serving import assert_not_stuck
from support.waiting import wait_for


def model_version(namespace, name, model, source, **spec):
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "ModelVersion",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"modelName": model, "source": source, **spec}}


def inference_service(namespace, name, model, **spec):
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": model, **spec}}


def infsvc(cluster, namespace, name):
    return get_resource(cluster, namespace, "inferenceservice.ferry.dev", name)


def status_of(cluster, namespace, name):
    return infsvc(cluster, namespace, name).get("status") or {}


def registered(cluster, namespace, name, version, timeout=90):
    """Apply order decides MLflow version numbers: wait for each before the next."""
    found = wait_for(lambda: (get_resource(cluster, namespace, "modelversion.ferry.dev", name)
                              .get("status", {}).get("mlflowVersion")),
                     timeout=timeout, message=f"{name} registered")
    assert found == version
    return found


def healthy_on(cluster, namespace, name, model_version, timeout=150):
    """Wait for Healthy on ``model_version``; a crash-looping server of that version fails at once."""
    def settled():
        status = status_of(cluster, namespace, name)
        if status.get("phase") == "Healthy" and status.get("stableVersion") == model_version:
            return status
        assert_not_stuck(cluster, namespace, f"ferry.dev/inferenceservice={name},"
                                             f"ferry.dev/model-version={model_version}")
        return None
    return wait_for(settled, timeout=timeout, message=f"{name} Healthy on {model_version}")


def event_reasons(cluster, namespace, name) -> list[str]:
    items = json.loads(cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                       f"involvedObject.name={name}", "-o", "json").stdout)["items"]
    return [e["reason"] for e in sorted(items, key=lambda e: e.get("firstTimestamp") or "")
            for _ in range(e.get("count") or 1)]


def alias(services, model, name):
    facts = Registry(services.endpoints["mlflow"]).version_by_alias(model, name)
    return facts.version if facts else None


def patch_spec(cluster, namespace, name, spec):
    cluster.kubectl("patch", "inferenceservice.ferry.dev", name, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": spec}))


def ferry(cluster, *args):
    subprocess.run([sys.executable, "-m", "ferry", *args, "--kubeconfig", cluster.kubeconfig],
                   check=True, capture_output=True)


def deployment_uids(cluster, namespace, name):
    items = json.loads(cluster.kubectl("get", "deployments", "-n", namespace, "-l",
                                       f"ferry.dev/inferenceservice={name}", "-o",
                                       "json").stdout)["items"]
    return {d["metadata"]["name"]: d["metadata"]["uid"] for d in items}


CANARY_ANALYSIS = {"interval": "4s", "failureLimit": 0, "maxErrorRate": 0.05,
                   "maxLatencyP99Seconds": 3}
