"""The drift monitor on the real control plane: the builder's CronJob, a Job from it on the real
node (Ferry's image) reading a prediction log written by the serving code in the real S3, both reports in S3,
``status.drift`` patched by the pod's own ServiceAccount — which can patch nothing else; and the
operator's side: why it cannot monitor yet (no prediction log, no reference) until it can."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import requests
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.rest import ApiException

from ferry.adapters.s3 import ObjectStore
from ferry.api.inferenceservice import InferenceServiceSpec
from ferry.builders.driftmonitor import build_drift_monitor
from ferry_dev.services import BUCKET
from ferry.serving.payload import Frame
from ferry.serving.predlog import PredictionLog, log_table, object_key
from support.cluster import IMAGE, create_namespace
from support.objects import apply_manifests
from support.waiting import wait_for

ROWS = 600
SA = "fraud-drift"


@pytest.fixture
def drift_namespace(cluster):
    """Not ``ft-*``: the session operator must not reconcile this InferenceService; the test plays
    the operator's part by applying the builder's output."""
    name = create_namespace(cluster, "drift")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def inference_service(namespace: str, name: str) -> dict:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"model": {"modelVersion": f"{name}-1"},
                     "monitoring": {"drift": {"schedule": "0 0 1 1 *", "window": "1h",
                                              "exclude": ["label"], "minRows": 50}}}}


def get_infsvc(cluster, namespace: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", "inferenceservice.ferry.dev", name, "-n", namespace,
                                      "-o", "json").stdout)


def features(rng, rows: int, shift: float) -> pd.DataFrame:
    return pd.DataFrame({
        "amount": rng.normal(100 + shift * 40, 20, rows),
        "age": rng.normal(40, 10, rows),
        "country": rng.choice(["DE", "FR", "US", "XX" if shift else "DE"], rows)})


def write_data(services, namespace: str) -> dict[str, str]:
    """A reference snapshot and a prediction log: shifted traffic in this hour, plus an old file
    (five hours ago, outside the window) that must not be read."""
    store = ObjectStore(client=services.s3_client())
    rng = np.random.default_rng(7)
    reference = features(rng, 2000, shift=0)
    reference["label"] = rng.integers(0, 2, 2000)
    reference_uri = f"s3://{BUCKET}/features/{namespace}/fraud/run-1/part-0.parquet"
    store.write_parquet(reference_uri, pa.Table.from_pandas(reference, preserve_index=False))

    logs = f"s3://{BUCKET}/predictions/{namespace}/fraud"
    written = []
    log = PredictionLog(logs, "fraud-1", "pod-a", sample_rate=1.0, batch_rows=10_000,
                        flush_seconds=60, max_rows=100_000, on_written=written.append,
                        on_dropped=lambda rows: None, store=store)
    for _ in range(3):
        frame = features(rng, ROWS // 3, shift=1)
        log.offer(Frame("frame", frame, None, len(frame)), rng.random(len(frame)))
    assert log.flush() == ROWS
    old_ms = int((datetime.now(UTC) - timedelta(hours=5)).timestamp() * 1000)
    old = features(rng, 100, shift=0)
    store.write_parquet(f"s3://{BUCKET}/{object_key(log.prefix, 'fraud-1', 'pod-a', old_ms, 99)}",
                        log_table(Frame("frame", old, None, 100), np.zeros(100), "fraud-1", old_ms))
    # The reference as ModelVersion lineage records it: the feature run's folder.
    return {"reference": reference_uri.rsplit("/", 1)[0], "logs": logs,
            "reports": f"s3://{BUCKET}/drift/{namespace}/fraud"}


def s3_env(services) -> list[dict]:
    env = services.env()
    secret_keys = [{"name": key, "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": key}}}
                   for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    return secret_keys + [{"name": "AWS_DEFAULT_REGION", "value": env["AWS_DEFAULT_REGION"]},
                          {"name": "AWS_ENDPOINT_URL_S3", "value": services.endpoints["s3"]},
                          {"name": "FERRY_PUSHGATEWAY_URL",
                           "value": services.endpoints["pushgateway"]}]


def job_finished(cluster, namespace: str, job: str) -> str | None:
    status = json.loads(cluster.kubectl("get", "job", job, "-n", namespace, "-o", "json")
                        .stdout).get("status", {})
    for condition in status.get("conditions", []):
        if condition["status"] == "True" and condition["type"] in ("Complete", "Failed"):
            return condition["type"]
    return None


def pod_log(cluster, namespace: str, job: str) -> str:
    """What the Job's pods printed, through ``kubectl logs`` (the kubelet serves it)."""
    return cluster.kubectl("logs", "-n", namespace, f"job/{job}", "--all-containers",
                           check=False).stdout


def service_account_client(cluster, namespace: str) -> client.CustomObjectsApi:
    """An API client that authenticates with nothing but the ServiceAccount's token."""
    token = cluster.kubectl("create", "token", SA, "-n", namespace).stdout.strip()
    configuration = client.Configuration()
    kube_config.load_kube_config(config_file=cluster.kubeconfig,
                                 client_configuration=configuration)
    configuration.cert_file = configuration.key_file = None
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.CustomObjectsApi(client.ApiClient(configuration))


def can_i(cluster, namespace: str, *args: str) -> str:
    result = cluster.kubectl("auth", "can-i", *args, "-n", namespace,
                             f"--as=system:serviceaccount:{namespace}:{SA}", check=False)
    return result.stdout.strip()


def test_monitor_job_writes_reports_and_patches_only_its_own_status(cluster, services,
                                                                     drift_namespace):
    namespace = drift_namespace
    env = services.env()
    apply_manifests(cluster,
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds",
                                                              "namespace": namespace},
           "stringData": {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}},
          inference_service(namespace, "fraud"), inference_service(namespace, "other"))
    infsvc = get_infsvc(cluster, namespace, "fraud")
    uris = write_data(services, namespace)
    objects = build_drift_monitor(infsvc, InferenceServiceSpec.model_validate(infsvc["spec"]),
                                  IMAGE, uris["logs"], uris["reports"],
                                  uris["reference"], s3_env(services))
    apply_manifests(cluster, *objects)

    started = time.time()
    cluster.kubectl("create", "job", "--from=cronjob/fraud-drift", "fraud-drift-manual",
                    "-n", namespace)
    outcome = wait_for(lambda: job_finished(cluster, namespace, "fraud-drift-manual"), timeout=180,
                       message="the drift Job to finish")
    assert outcome == "Complete", pod_log(cluster, namespace, "fraud-drift-manual")

    drift = get_infsvc(cluster, namespace, "fraud")["status"]["drift"]
    assert drift["verdict"] == "Drifted"
    assert set(drift["driftedFeatures"]) == {"amount", "country"}
    assert drift["rows"] == ROWS  # the five-hour-old file is outside the window
    assert drift["referenceRows"] == 2000 and drift["featuresChecked"] == 3
    assert drift["window"] == "1h" and drift["runId"] == "fraud-drift-manual"
    assert drift["reportUri"] == f"{uris['reports']}/fraud-drift-manual/drift.json"
    assert drift["htmlReportUri"] == f"{uris['reports']}/fraud-drift-manual/drift.html"
    assert datetime.fromisoformat(drift["time"].replace("Z", "+00:00")).timestamp() >= started - 2
    store = ObjectStore(client=services.s3_client())
    report = store.get_json(drift["reportUri"])
    assert report["verdict"] == "Drifted" and report["subject"] == f"{namespace}/fraud"
    assert report["driftedFeatures"] == drift["driftedFeatures"]
    html = store.get_bytes(drift["htmlReportUri"]).decode()
    assert html.count('<svg class="chart"') == 3
    assert "status" not in get_infsvc(cluster, namespace, "other")

    metrics = requests.get(f"{services.endpoints['pushgateway']}/metrics", timeout=5).text
    ours = [line for line in metrics.splitlines()
            if line.startswith("ferry_") and f'namespace="{namespace}"' in line]
    assert any(line.startswith("ferry_drift_detected{") and line.endswith(" 1") for line in ours)
    assert any(line.startswith("ferry_drift_score{") and 'feature="amount"' in line
               for line in ours)

    # RBAC: the monitor's ServiceAccount may patch this status and nothing else.
    assert can_i(cluster, namespace, "patch", "inferenceservices.ferry.dev/fraud",
                 "--subresource=status") == "yes"
    assert can_i(cluster, namespace, "patch", "inferenceservices.ferry.dev/other",
                 "--subresource=status") == "no"
    assert can_i(cluster, namespace, "patch", "inferenceservices.ferry.dev/fraud") == "no"
    assert can_i(cluster, namespace, "get", "inferenceservices.ferry.dev/fraud") == "no"
    assert can_i(cluster, namespace, "get", "secrets") == "no"

    api = service_account_client(cluster, namespace)
    patch = {"status": {"drift": {"message": "patched with the monitor's token"}}}
    api.patch_namespaced_custom_object_status("ferry.dev", "v1alpha1", namespace,
                                              "inferenceservices", "fraud", patch)
    assert get_infsvc(cluster, namespace, "fraud")["status"]["drift"]["message"] == \
        "patched with the monitor's token"
    for name, call in (("other", api.patch_namespaced_custom_object_status),
                       ("fraud", api.patch_namespaced_custom_object)):
        with pytest.raises(ApiException) as denied:
            call("ferry.dev", "v1alpha1", namespace, "inferenceservices", name,
                 patch if call is api.patch_namespaced_custom_object_status
                 else {"spec": {"replicas": 5}})
        assert denied.value.status == 403, name
    assert get_infsvc(cluster, namespace, "fraud")["spec"]["replicas"] == 1
    assert "status" not in get_infsvc(cluster, namespace, "other")



def drift_condition(cluster, namespace: str, name: str) -> dict | None:
    conditions = (get_infsvc(cluster, namespace, name).get("status") or {}).get("conditions")
    return next((c for c in conditions or [] if c["type"] == "DriftMonitor"), None)


def exists(cluster, namespace: str, kind: str, name: str) -> bool:
    return cluster.kubectl("get", kind, name, "-n", namespace, check=False).returncode == 0


def test_the_operator_says_why_it_cannot_monitor_and_schedules_once_it_can(cluster, namespace,
                                                                            operator):
    """Without a prediction log, or without a reference (nothing served, none given), there is
    nothing to compare: a False condition with the reason and a Warning Event, and no CronJob."""
    service = inference_service(namespace, "mon")
    apply_manifests(cluster, service)

    def reason_is(expected: str):
        return lambda: (c := drift_condition(cluster, namespace, "mon")) and \
            c["reason"] == expected and c

    missing_log = wait_for(reason_is("NoPredictionLog"), timeout=60, message="NoPredictionLog")
    assert missing_log["status"] == "False" and "spec.predictionLogging" in missing_log["message"]
    assert not exists(cluster, namespace, "cronjob", "mon-drift")

    service["spec"]["predictionLogging"] = {"sampleRate": 1.0}
    apply_manifests(cluster, service)
    missing_reference = wait_for(reason_is("NoReference"), timeout=60, message="NoReference")
    assert missing_reference["status"] == "False"
    assert not exists(cluster, namespace, "cronjob", "mon-drift")
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                             "involvedObject.name=mon,type=Warning", "-o", "json").stdout
    reasons = {e["reason"] for e in json.loads(events)["items"]}
    assert {"NoPredictionLog", "NoReference"} <= reasons

    service["spec"]["monitoring"]["drift"]["reference"] = f"s3://{BUCKET}/reference/{namespace}/"
    apply_manifests(cluster, service)
    scheduled = wait_for(reason_is("Scheduled"), timeout=60, message="monitor scheduled")
    assert scheduled["status"] == "True" and f"reference/{namespace}/" in scheduled["message"]
    for kind in ("cronjob", "serviceaccount", "role", "rolebinding"):
        assert exists(cluster, namespace, kind, "mon-drift"), kind
