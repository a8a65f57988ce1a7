"""The quality monitor on the real cluster, end to end: ``ferry serve`` (a real subprocess, real
MLflow, real S3) answers traffic with client ids and logs the predictions, labels arrive through
its feedback endpoint, the session operator schedules the monitor, a Job from its CronJob runs
``ferry quality run`` in Ferry's image on the real node with its own ServiceAccount, and the
operator turns the patched ``status.quality`` into the ``QualityHealthy`` condition, an Event and
the ``ferry_model_quality`` gauge. The figures are checked against scikit-learn on the same rows
joined with pandas."""

from __future__ import annotations

import io
import json
import uuid

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as sk

from ferry.adapters.s3 import ObjectStore
from integration.test_serve import Served
from support.environ import services_environment
from support.objects import apply_manifests
from support.waiting import wait_for

FEATURES = [f"f{i}" for i in range(4)]
LABELLED, PENDING = 200, 40
NAME, VERSION = "quality", "quality-1"


@pytest.fixture(scope="module")
def model(services):
    """A LogisticRegression in the real MLflow registry."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    with services_environment(services):
        mlflow.set_tracking_uri(services.endpoints["mlflow"])
        mlflow.set_experiment("quality-tests")
        features, labels = make_classification(n_samples=400, n_features=4, n_informative=3,
                                               n_redundant=0, random_state=2)
        train = pd.DataFrame(features, columns=FEATURES)
        classifier = LogisticRegression().fit(train, labels)
        name = f"quality-lr-{uuid.uuid4().hex[:6]}"
        with mlflow.start_run():
            mlflow.sklearn.log_model(classifier, name="model", registered_model_name=name,
                                     signature=infer_signature(train, classifier.predict(train)))
    return f"models:/{name}/1"


def inference_service(namespace: str) -> dict:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
            "metadata": {"name": NAME, "namespace": namespace},
            "spec": {"model": {"modelVersion": VERSION},
                     "objectStore": {"secretRef": {"name": "s3-creds"}},
                     "predictionLogging": {"sampleRate": 1.0},
                     "monitoring": {"quality": {
                         "schedule": "0 0 1 1 *", "window": "1h", "joinWindow": "1d",
                         "minLabels": 50, "thresholds": {"accuracy": {"min": 0.9}},
                         "slices": [{"name": "high", "expression": "f0 > 0"},
                                    {"name": "late", "expression":
                                     "starts_with(ferry_prediction_id, 'late-')"}]}}}}


def get_infsvc(cluster, namespace: str) -> dict:
    return json.loads(cluster.kubectl("get", "inferenceservice.ferry.dev", NAME, "-n", namespace,
                                      "-o", "json").stdout)


def condition(cluster, namespace: str, type_: str) -> dict | None:
    conditions = (get_infsvc(cluster, namespace).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), None)


def job_finished(cluster, namespace: str, job: str) -> str | None:
    status = json.loads(cluster.kubectl("get", "job", job, "-n", namespace, "-o", "json")
                        .stdout).get("status", {})
    return next((c["type"] for c in status.get("conditions", [])
                 if c["status"] == "True" and c["type"] in ("Complete", "Failed")), None)


def logged_rows(store: ObjectStore, logs: str) -> pd.DataFrame:
    """The prediction log's own partitions (not the labels' nor the reports beside them)."""
    objects = [o["uri"] for o in store.list(logs) if o["uri"][len(logs):].startswith("dt=")
               and o["uri"].endswith(".parquet")]
    return pd.concat([pq.read_table(io.BytesIO(store.get_bytes(uri))).to_pandas()
                      for uri in objects], ignore_index=True)


def without_nulls(value):
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    return [without_nulls(v) for v in value] if isinstance(value, list) else value


def group_metric(group: dict, name: str) -> dict:
    return next(m for m in group["metrics"] if m["name"] == name)


def test_labels_sent_as_feedback_become_status_quality_and_a_degraded_condition(
        cluster, services, namespace, operator, model, tmp_path):
    env = services.env()
    apply_manifests(cluster, {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds", "namespace": namespace},
        "stringData": {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                           "AWS_DEFAULT_REGION")}}, inference_service(namespace))
    scheduled = wait_for(lambda: (c := condition(cluster, namespace, "QualityMonitor")) and
                         c["reason"] == "Scheduled" and c, timeout=60, message="monitor scheduled")
    assert scheduled["status"] == "True"
    waiting = condition(cluster, namespace, "QualityHealthy")
    assert (waiting["status"], waiting["reason"]) == ("Unknown", "AwaitingFirstRun")

    logs = f"s3://{env['FERRY_S3_BUCKET']}/predictions/{namespace}/{NAME}/"
    served = Served(services, tmp_path, model, FERRY_PREDICTION_LOG_URI=logs,
                    FERRY_MODEL_NAME=NAME, FERRY_MODEL_VERSION=VERSION,
                    FERRY_PREDICTION_SAMPLE_RATE="1", FERRY_PREDICTION_LOG_FLUSH_SECONDS="0.5")
    try:
        served.wait_ready()
        rng = np.random.default_rng(5)
        queries = pd.DataFrame(rng.normal(size=(LABELLED + PENDING, 4)) * 1.5, columns=FEATURES)
        ids = [f"q-{i:03d}" for i in range(LABELLED)] + [f"late-{i:02d}" for i in range(PENDING)]
        predictions = []
        for start in range(0, len(ids), 40):
            chunk = queries.iloc[start:start + 40]
            body = {"dataframe_split": {"columns": ["id", *FEATURES], "data": [
                [row_id, *values] for row_id, values in zip(ids[start:start + 40],
                                                            chunk.values.tolist(), strict=True)]}}
            response = served.post("/invocations", json=body)
            assert response.status_code == 200, response.text
            predictions += response.json()["predictions"]
        # The outcome disagrees with the model on a quarter of the labelled rows: accuracy ~0.75.
        flipped = rng.random(LABELLED) < 0.25
        labels = {row_id: int(1 - p if flip else p) for row_id, p, flip in
                  zip(ids[:LABELLED], predictions[:LABELLED], flipped, strict=True)}
        for start in range(0, LABELLED, 100):
            batch = list(labels.items())[start:start + 100]
            response = served.post(f"/v2/models/{NAME}/feedback", json={
                "labels": [{"id": row_id, "label": label} for row_id, label in batch]})
            assert response.status_code == 200 and response.json() == {"accepted": len(batch)}
    finally:
        assert served.stop() == 0  # flushes the prediction log

    cluster.kubectl("create", "job", "--from=cronjob/quality-quality", "quality-manual",
                    "-n", namespace)
    outcome = wait_for(lambda: job_finished(cluster, namespace, "quality-manual"), timeout=240,
                       message="the quality Job to finish")
    assert outcome == "Complete", cluster.kubectl("logs", "-n", namespace, "job/quality-manual",
                                                  check=False).stdout
    quality = get_infsvc(cluster, namespace)["status"]["quality"]

    # The same rows joined with pandas and measured with scikit-learn.
    store = ObjectStore(client=services.s3_client())
    rows = logged_rows(store, logs)
    assert sorted(rows["ferry_prediction_id"]) == sorted(ids)
    rows["label"] = rows["ferry_prediction_id"].map(labels)
    labelled = rows.dropna(subset=["label"])
    expected = {"accuracy": sk.accuracy_score(labelled.label, labelled.prediction),
                "precision": sk.precision_score(labelled.label, labelled.prediction),
                "recall": sk.recall_score(labelled.label, labelled.prediction),
                "f1": sk.f1_score(labelled.label, labelled.prediction),
                "rocAuc": sk.roc_auc_score(labelled.label, labelled.ferry_proba_1),
                "logLoss": sk.log_loss(labelled.label,
                                       labelled[["ferry_proba_0", "ferry_proba_1"]].to_numpy())}

    (version,) = quality["versions"]
    assert version["version"] == VERSION and version["verdict"] == "Degraded"
    assert version["coverage"] == {"labelled": LABELLED, "predicted": LABELLED + PENDING,
                                   "ratio": LABELLED / (LABELLED + PENDING)}
    for name, value in expected.items():
        found = group_metric(version, name)
        assert found["value"] == pytest.approx(value, abs=1e-9), name
        assert found["estimated"] is False
    assert expected["accuracy"] < 0.9
    assert group_metric(version, "accuracy")["message"].startswith("accuracy 0.")

    high, late = version["slices"]
    in_high = labelled[labelled.f0 > 0]
    assert high["name"] == "high" and high["coverage"]["labelled"] == len(in_high)
    assert group_metric(high, "accuracy")["value"] == pytest.approx(
        sk.accuracy_score(in_high.label, in_high.prediction), abs=1e-9)
    # No label for the late rows yet: Inconclusive, with the CBPE estimate from the probabilities.
    pending = rows[rows.ferry_prediction_id.str.startswith("late-")]
    assert late["verdict"] == "Inconclusive" and late["coverage"]["labelled"] == 0
    estimate = group_metric(late, "accuracy")
    assert estimate["estimated"] is True
    assert estimate["value"] == pytest.approx(
        np.mean(np.maximum(pending.ferry_proba_0, pending.ferry_proba_1)), abs=1e-9)

    assert quality["verdict"] == "Degraded" and quality["runId"] == "quality-manual"
    assert quality["window"] == "1h" and quality["joinWindow"] == "1d"
    reports = f"{logs}quality-reports/quality-manual"
    assert quality["reportUri"] == f"{reports}/quality.json"
    # The same figures as the status (where the apiserver keeps no null fields).
    assert without_nulls(store.get_json(quality["reportUri"])["versions"]) == quality["versions"]
    assert "Slice late" in store.get_bytes(quality["htmlReportUri"]).decode()

    degraded = wait_for(lambda: (c := condition(cluster, namespace, "QualityHealthy")) and
                        c["status"] == "False" and c, timeout=60, message="QualityHealthy False")
    assert degraded["reason"] == "Degraded"
    assert degraded["message"].startswith(f"{VERSION}: accuracy ")
    assert degraded["message"].endswith("(run quality-manual)")
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                                        f"involvedObject.name={NAME},type=Warning", "-o",
                                        "json").stdout)["items"]
    assert "Degraded" in {e["reason"] for e in events}
    gauge = [line for line in operator.metrics().splitlines()
             if line.startswith("ferry_model_quality{") and f'namespace="{namespace}"' in line]
    assert any('metric="accuracy"' in line and 'slice=""' in line and 'estimated="false"' in line
               and line.endswith(f" {expected['accuracy']}") for line in gauge), gauge
    assert any('slice="late"' in line and 'estimated="true"' in line for line in gauge), gauge

    # Least privilege: the monitor's ServiceAccount may patch this status and nothing else.
    account = f"--as=system:serviceaccount:{namespace}:quality-quality"
    for args, allowed in (((f"inferenceservices.ferry.dev/{NAME}", "--subresource=status"), "yes"),
                          ((f"inferenceservices.ferry.dev/{NAME}",), "no")):
        result = cluster.kubectl("auth", "can-i", "patch", *args, "-n", namespace, account,
                                 check=False)
        assert result.stdout.strip() == allowed, args
