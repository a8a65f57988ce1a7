"""The drift monitor's CronJob, ServiceAccount, Role and RoleBinding (pure builder)."""

from __future__ import annotations

import json

import pytest

from ferry.api.inferenceservice import DriftMonitor, InferenceServiceSpec
from ferry.builders.driftmonitor import build_drift_monitor
from ferry.drift.config import MonitorConfig
from ferry.podenv import MissingEnv
from support.podenv import kubelet_env

INFSVC = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
          "metadata": {"name": "fraud", "namespace": "team-a", "uid": "u-1"}}
LOGS, REPORTS, REFERENCE = "s3://b/logs/fraud", "s3://b/drift/fraud", "s3://b/features/v1/run-1/"


def spec(**drift) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({
        "model": {"modelName": "fraud", "policy": "latestApproved"},
        "monitoring": {"drift": {"schedule": "*/15 * * * *", "window": "2h",
                                 "features": ["amount"], **drift}}})


def build(s=None, **kwargs):
    args = dict(image="ferry:1", prediction_log_uri=LOGS, report_uri=REPORTS,
                reference_uri=REFERENCE, extra_env=[{"name": "AWS_ENDPOINT_URL_S3",
                                                     "value": "http://s3"}]) | kwargs
    objects = build_drift_monitor(INFSVC, s or spec(), **args)
    return {o["kind"]: o for o in objects}


def env_of(cron: dict) -> dict:
    container = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_objects_are_owned_and_labelled():
    objects = build()
    assert sorted(objects) == ["CronJob", "Role", "RoleBinding", "ServiceAccount"]
    for obj in objects.values():
        meta = obj["metadata"]
        assert meta["name"] == "fraud-drift" and meta["namespace"] == "team-a"
        assert meta["ownerReferences"][0]["uid"] == "u-1"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "ferry"
        assert meta["labels"]["ferry.dev/inferenceservice"] == "fraud"
        assert meta["labels"]["ferry.dev/component"] == "drift-monitor"


def test_role_allows_only_patching_this_services_status():
    role = build()["Role"]
    assert role["rules"] == [{"apiGroups": ["ferry.dev"], "resources": ["inferenceservices/status"],
                              "resourceNames": ["fraud"], "verbs": ["patch"]}]
    binding = build()["RoleBinding"]
    assert binding["roleRef"]["name"] == "fraud-drift"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fraud-drift",
                                    "namespace": "team-a"}]


def test_cronjob_runs_ferry_drift_monitor_non_root_one_at_a_time():
    cron = build()["CronJob"]
    assert cron["spec"]["schedule"] == "*/15 * * * *"
    assert cron["spec"]["concurrencyPolicy"] == "Forbid"
    job = cron["spec"]["jobTemplate"]
    assert job["metadata"]["labels"]["ferry.dev/owner-uid"] == "u-1"
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "fraud-drift"
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 65532,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    container = pod["containers"][0]
    assert container["command"] == ["ferry", "drift", "monitor"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["volumeMounts"] == [{"name": "scratch", "mountPath": "/tmp/ferry-drift"}]
    assert {"name": "TMPDIR", "value": "/tmp/ferry-drift"} in container["env"]


def test_env_carries_the_contract():
    env = env_of(build()["CronJob"])
    assert env["FERRY_INFERENCESERVICE"] == "fraud"
    assert env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["FERRY_PREDICTION_LOG_URI"] == LOGS
    assert env["FERRY_DRIFT_REPORT_URI"] == REPORTS
    assert env["FERRY_DRIFT_REFERENCE"] == REFERENCE
    assert env["AWS_ENDPOINT_URL_S3"] == "http://s3"
    config = json.loads(env["FERRY_DRIFT_CONFIG"])
    assert config["window"] == "2h" and config["features"] == ["amount"]
    assert "schedule" not in config and "onDrift" not in config


def test_explicit_reference_wins_and_a_missing_one_is_an_error():
    env = env_of(build(spec(reference="s3://b/ref.parquet"))["CronJob"])
    assert env["FERRY_DRIFT_REFERENCE"] == "s3://b/ref.parquet"
    with pytest.raises(ValueError, match="needs a reference"):
        build(reference_uri=None)


def test_no_monitoring_no_objects():
    bare = InferenceServiceSpec.model_validate({"model": {"modelVersion": "fraud-3"}})
    assert build_drift_monitor(INFSVC, bare, "ferry:1", LOGS, REPORTS, REFERENCE, []) == []


def test_long_names_fit_a_cronjob():
    long_svc = {**INFSVC, "metadata": {**INFSVC["metadata"], "name": "x" * 63}}
    cron = build_drift_monitor(long_svc, spec(), "ferry:1", LOGS, REPORTS, REFERENCE)[-1]
    assert len(cron["metadata"]["name"]) <= 52
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][0][
        "value"] == "x" * 63


POD = {"metadata.namespace": "team-a",
       "metadata.labels['batch.kubernetes.io/job-name']": "fraud-drift-29000000"}


def container_env(cron: dict) -> list[dict]:
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]


def test_builder_env_is_the_monitor_config_then_scratch_then_extra():
    drift = spec().monitoring.drift
    expected = MonitorConfig(inference_service="fraud", prediction_log_uri=LOGS,
                             report_uri=REPORTS, drift=drift, reference=REFERENCE).to_env()
    assert container_env(build()["CronJob"]) == [
        *expected, {"name": "TMPDIR", "value": "/tmp/ferry-drift"},
        {"name": "AWS_ENDPOINT_URL_S3", "value": "http://s3"}]


def test_the_monitor_reads_back_what_the_builder_wrote():
    seen = MonitorConfig.from_env(kubelet_env(container_env(build()["CronJob"]), POD))
    assert (seen.inference_service, seen.namespace, seen.run_id) == (
        "fraud", "team-a", "fraud-drift-29000000")
    assert (seen.prediction_log_uri, seen.report_uri, seen.reference) == (LOGS, REPORTS, REFERENCE)
    assert seen.drift.window == "2h" and seen.drift.features == ["amount"]
    assert seen.drift.schedule == DriftMonitor().schedule and seen.drift.on_drift is None
    assert seen.pushgateway_url is None


def test_monitor_config_round_trips_and_names_what_is_missing():
    config = MonitorConfig(inference_service="fraud", prediction_log_uri=LOGS, report_uri=REPORTS,
                           drift=DriftMonitor(window="30m", min_rows=5), reference=REFERENCE,
                           namespace="team-a", run_id="run-1", pushgateway_url="http://gw:9091")
    env = kubelet_env(config.to_env(), {})
    assert MonitorConfig.from_env(env) == config
    bare = MonitorConfig.from_env({k: v for k, v in env.items()
                                   if k in ("FERRY_INFERENCESERVICE", "POD_NAMESPACE",
                                            "FERRY_PREDICTION_LOG_URI", "FERRY_DRIFT_REPORT_URI")})
    assert bare.run_id is None and bare.reference is None and bare.drift == DriftMonitor()
    with pytest.raises(MissingEnv, match="POD_NAMESPACE, FERRY_DRIFT_REPORT_URI"):
        MonitorConfig.from_env({k: v for k, v in env.items()
                                if k not in ("POD_NAMESPACE", "FERRY_DRIFT_REPORT_URI")})
