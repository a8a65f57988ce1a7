"""The quality monitor's CronJob, ServiceAccount, Role and RoleBinding (pure builder) and the env
contract its pod reads back."""

from __future__ import annotations

import json

import pytest

from ferry.api.inferenceservice import InferenceServiceSpec, QualityMonitor
from ferry.builders.driftmonitor import build_drift_monitor
from ferry.builders.qualitymonitor import build_quality_monitor
from ferry.podenv import MissingEnv
from ferry.quality.config import QualityConfig
from support.podenv import kubelet_env

INFSVC = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
          "metadata": {"name": "fraud", "namespace": "team-a", "uid": "u-1"}}
LOGS = "s3://b/predictions/team-a/fraud/"
QUALITY = {"schedule": "*/30 * * * *", "window": "12h", "joinWindow": "3d", "minLabels": 20,
           "slices": [{"name": "de", "column": "country", "values": ["de"]}],
           "thresholds": {"accuracy": {"min": 0.8}}}
POD = {"metadata.namespace": "team-a",
       "metadata.labels['batch.kubernetes.io/job-name']": "fraud-quality-29000000"}


def spec(**quality) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({
        "model": {"modelName": "fraud", "policy": "latestApproved"},
        "monitoring": {"quality": {**QUALITY, **quality},
                       "drift": {"reference": "s3://b/ref/"}}})


def build(s=None, **kwargs) -> dict[str, dict]:
    args = dict(extra_env=[{"name": "AWS_ENDPOINT_URL_S3", "value": "http://s3"}]) | kwargs
    return {o["kind"]: o for o in build_quality_monitor(INFSVC, s or spec(), "ferry:1", LOGS,
                                                        **args)}


def pod_spec(cron: dict) -> dict:
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def test_objects_are_owned_labelled_and_apart_from_the_drift_monitors():
    objects = build()
    assert sorted(objects) == ["CronJob", "Role", "RoleBinding", "ServiceAccount"]
    for obj in objects.values():
        meta = obj["metadata"]
        assert meta["name"] == "fraud-quality" and meta["namespace"] == "team-a"
        assert meta["ownerReferences"][0]["uid"] == "u-1"
        assert meta["labels"]["ferry.dev/component"] == "quality-monitor"
    drift = build_drift_monitor(INFSVC, spec(), "ferry:1", LOGS, "s3://b/r", None)
    assert {o["metadata"]["name"] for o in drift} == {"fraud-drift"}


def test_role_allows_only_patching_this_services_status():
    objects = build()
    assert objects["Role"]["rules"] == [{"apiGroups": ["ferry.dev"],
                                         "resources": ["inferenceservices/status"],
                                         "resourceNames": ["fraud"], "verbs": ["patch"]}]
    assert objects["RoleBinding"]["subjects"] == [{"kind": "ServiceAccount",
                                                   "name": "fraud-quality", "namespace": "team-a"}]
    assert pod_spec(objects["CronJob"])["serviceAccountName"] == "fraud-quality"


def test_cronjob_runs_ferry_quality_run_under_restricted_pod_security():
    cron = build()["CronJob"]
    assert cron["spec"]["schedule"] == "*/30 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    pod = pod_spec(cron)
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    container = pod["containers"][0]
    assert container["image"] == "ferry:1"
    assert container["command"] == ["ferry", "quality", "run"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False,
                                            "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}
    assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp/ferry-quality"}]


def test_the_pod_reads_back_what_the_builder_wrote():
    env = pod_spec(build()["CronJob"])["containers"][0]["env"]
    assert env[-2:] == [{"name": "TMPDIR", "value": "/tmp/ferry-quality"},
                        {"name": "AWS_ENDPOINT_URL_S3", "value": "http://s3"}]
    assert "schedule" not in json.loads(next(e["value"] for e in env
                                             if e["name"] == "FERRY_QUALITY_CONFIG"))
    seen = QualityConfig.from_env(kubelet_env(env, POD))
    assert (seen.inference_service, seen.namespace, seen.run_id, seen.prediction_log_uri) == (
        "fraud", "team-a", "fraud-quality-29000000", LOGS)
    expected = QualityMonitor.model_validate({k: v for k, v in QUALITY.items() if k != "schedule"})
    assert seen.quality == expected


def test_config_round_trips_and_names_what_is_missing():
    config = QualityConfig(inference_service="fraud", prediction_log_uri=LOGS,
                           quality=QualityMonitor(window="1h", min_labels=5, outcome="clicked"),
                           namespace="team-a", run_id="run-1")
    env = kubelet_env(config.to_env(), {})
    assert QualityConfig.from_env(env) == config
    bare = QualityConfig.from_env({k: v for k, v in env.items()
                                   if k in ("FERRY_INFERENCESERVICE", "POD_NAMESPACE",
                                            "FERRY_PREDICTION_LOG_URI")})
    assert bare.run_id is None and bare.quality == QualityMonitor()
    with pytest.raises(MissingEnv, match="POD_NAMESPACE, FERRY_PREDICTION_LOG_URI"):
        QualityConfig.from_env({k: v for k, v in env.items()
                                if k not in ("POD_NAMESPACE", "FERRY_PREDICTION_LOG_URI")})


def test_no_quality_monitoring_no_objects_and_long_names_fit_a_cronjob():
    bare = InferenceServiceSpec.model_validate({"model": {"modelVersion": "fraud-3"}})
    assert build_quality_monitor(INFSVC, bare, "ferry:1", LOGS) == []
    long_svc = {**INFSVC, "metadata": {**INFSVC["metadata"], "name": "x" * 63}}
    cron = build_quality_monitor(long_svc, spec(), "ferry:1", LOGS)[-1]
    assert len(cron["metadata"]["name"]) <= 52
