"""``spec.retrainPolicy`` on the real cluster: `ferry retrain` writes an on-demand trigger into
the spec (as a Git commit would), the operator starts one retraining run that records the trigger
and its evidence, and the shared cooldown decides a second request exactly once."""

from __future__ import annotations

import json

from support.cluster import IMAGE
from support.objects import apply_manifests, get
from support.rollouts import event_reasons, ferry, healthy_on, inference_service, model_version, \
    registered, status_of
from support.waiting import wait_for

YEARLY = {"cron": "0 0 1 1 *"}  # a trigger that does not fire during the test: the policy's base


def retraining_runs(cluster, namespace: str) -> list[dict]:
    items = json.loads(cluster.kubectl("get", "trainingruns.ferry.dev", "-n", namespace, "-l",
                                       "ferry.dev/component=retrain", "-o", "json").stdout)["items"]
    return sorted(items, key=lambda run: run["metadata"]["name"])


def policy(cluster, namespace: str, name: str) -> dict:
    return status_of(cluster, namespace, name).get("retrainPolicy") or {}


def test_ferry_retrain_starts_one_run_with_its_evidence_and_the_cooldown_holds_the_next(
        cluster, namespace, operator, scraped, runs):
    apply_manifests(cluster, model_version(namespace, "r-1", f"retrain-{namespace}", runs["double"]))
    registered(cluster, namespace, "r-1", "1")
    apply_manifests(cluster, inference_service(namespace, "api", {"modelVersion": "r-1"}, retrainPolicy={
        "template": {"image": IMAGE, "command": ["python", "-c", "pass"]},
        "cooldown": "1h", "triggers": {"schedule": YEARLY}}))
    healthy_on(cluster, namespace, "api", "r-1")
    assert retraining_runs(cluster, namespace) == []

    ferry(cluster, "retrain", "infsvc/api", "-n", namespace, "--reason", "labels for May landed")
    request = get(cluster, namespace, "InferenceService", "api")["spec"]["retrainPolicy"][
        "triggers"]["onDemand"]
    assert request["reason"] == "labels for May landed" and request["id"]
    (run,) = wait_for(lambda: retraining_runs(cluster, namespace), timeout=60,
                      message="a retraining run for the request")
    annotations = run["metadata"]["annotations"]
    assert annotations["ferry.dev/retrain-triggers"] == "onDemand"
    evidence = json.loads(annotations["ferry.dev/retrain-evidence"])
    assert evidence["onDemand"]["key"] == f"onDemand:{request['id']}", evidence
    assert "labels for May landed" in json.dumps(evidence)
    recorded = wait_for(lambda: (p := policy(cluster, namespace, "api")).get("decision") and p,
                        timeout=30, message="status.retrainPolicy recorded")
    assert recorded["decision"] == "Triggered" and recorded["lastRun"] == run["metadata"]["name"]
    assert recorded["triggers"] == ["onDemand"]

    # A second request inside the cooldown is decided once: suppressed, said so, no run.
    ferry(cluster, "retrain", "infsvc/api", "-n", namespace, "--reason", "again")
    suppressed = wait_for(lambda: (p := policy(cluster, namespace, "api")).get(
        "decision") == "Cooldown" and p, timeout=60, message="the second request suppressed")
    assert "inside the 1h cooldown" in suppressed["message"], suppressed
    assert len(retraining_runs(cluster, namespace)) == 1
    reasons = event_reasons(cluster, namespace, "api")
    assert reasons.count("RetrainTriggered") == 1 and reasons.count("RetrainSuppressed") == 1, reasons
