"""TrainingRun ``register`` on the real control plane, MLflow and S3: a run that trains and logs a
model on the real node produces a ModelVersion with full lineage, Approved or Rejected by its
gates."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry.adapters.mlflow import Registry
from ferry_dev.services import BUCKET
from ferry.status import find_condition
from support.cluster import IMAGE
from support.objects import apply, get
from support.waiting import wait_for

# Trains nothing real but logs like a trainer: parameters, a metric and a pyfunc model with an
# input signature, into the run the operator created.
TRAIN = """
import io, json, os
import boto3, mlflow, pyarrow.parquet as pq
from mlflow.models import infer_signature

class Doubler(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input, params=None):
        return model_input['amount'] * 2

params = json.load(open(os.environ['FERRY_PARAMETERS_FILE']))
bucket, _, key = os.environ['FERRY_FEATURES_URI'].removeprefix('s3://').partition('/')
s3 = boto3.client('s3', endpoint_url=os.environ['MLFLOW_S3_ENDPOINT_URL'])
data = s3.get_object(Bucket=bucket, Key=key + 'part-0.parquet')['Body'].read()
frame = pq.read_table(io.BytesIO(data)).to_pandas()
with mlflow.start_run(run_id=os.environ['MLFLOW_RUN_ID']):
    mlflow.log_params(params)
    mlflow.log_metric('auc', float(params['quality']))
    mlflow.log_metric('rows', len(frame))
    mlflow.pyfunc.log_model(name='model', python_model=Doubler(), pip_requirements=['mlflow'],
                            signature=infer_signature(frame[['amount']], frame['amount']))
"""


@pytest.fixture
def features(cluster, namespace, services):
    """A Ready FeaturePipeline (real Job, real S3) and the S3/MLflow credentials Secret."""
    s3 = services.s3_client()
    buffer = io.BytesIO()
    pq.write_table(pa.table({"amount": [float(i) for i in range(20)]}), buffer)
    s3.put_object(Bucket=BUCKET, Key=f"raw/{namespace}/amounts.parquet", Body=buffer.getvalue())
    env = services.env()
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")
    apply(cluster, namespace,
          {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
           "stringData": {k: env[k] for k in (*keys, "MLFLOW_S3_ENDPOINT_URL")}},
          {"apiVersion": "ferry.dev/v1alpha1", "kind": "FeaturePipeline",
           "metadata": {"name": "amounts"},
           "spec": {"featureSet": f"amounts-{namespace}", "version": "v1",
                    "s3Credentials": {"name": "creds"},
                    "transform": {"sql": {"sources": [{"name": "raw", "uri": f"s3://{BUCKET}/raw/"
                                                       f"{namespace}/amounts.parquet"}],
                                          "query": "select amount from raw"}}}})
    ready = wait_for(lambda: (o := get(cluster, namespace, "FeaturePipeline", "amounts")) and
                     (find_condition(o.get("status", {}).get("conditions"), "Ready") or {})
                     .get("status") == "True" and o, timeout=120, message="features Ready")
    return ready


def run_with_register(name, model, quality):
    secret_env = [{"name": key, "valueFrom": {"secretKeyRef": {"name": "creds", "key": key}}}
                  for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
                              "MLFLOW_S3_ENDPOINT_URL")]
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": name},
            "spec": {"image": IMAGE, "command": ["python", "-c", TRAIN],
                     "features": "amounts", "parameters": {"quality": quality, "depth": "4"},
                     "env": secret_env,
                     "register": {"modelName": model, "description": "from a test",
                                  "tags": {"team": "risk"},
                                  "gates": {"metrics": [{"metric": "auc", "op": ">=",
                                                         "value": 0.8}],
                                            "signature": True}}}}


def test_register_creates_an_approved_or_rejected_model_version_with_lineage(
        cluster, namespace, operator, services, features):
    model = f"fraud-{namespace}"
    apply(cluster, namespace, run_with_register("good", model, "0.9"),
          run_with_register("weak", model, "0.6"))
    mv_name = f"{model}-good"
    approved = wait_for(lambda: (o := get(cluster, namespace, "ModelVersion", mv_name))
                        ["status"].get("phase") == "Approved" and o, timeout=240, interval=1,
                        message="ModelVersion of the good run Approved")
    run = get(cluster, namespace, "TrainingRun", "good")
    assert run["status"]["phase"] == "Succeeded"
    assert run["status"]["modelVersion"] == mv_name
    assert find_condition(run["status"]["conditions"], "Registered")["status"] == "True"

    # Owned by nobody (it outlives the run), labelled with the run, spec from `register`.
    assert "ownerReferences" not in approved["metadata"]
    assert approved["metadata"]["labels"]["ferry.dev/trainingrun"] == "good"
    assert approved["spec"]["trainingRunRef"] == "good"
    assert approved["spec"]["features"] == "amounts"
    assert approved["spec"]["tags"] == {"team": "risk"}

    lineage = approved["status"]["lineage"]
    assert lineage["trainingRun"] == "good"
    assert lineage["runId"] == run["status"]["mlflowRunId"]
    assert lineage["experiment"] == run["status"]["experimentId"]
    assert lineage["featurePipeline"] == "amounts" and lineage["featureVersion"] == "v1"
    assert lineage["dataUri"] == run["status"]["featuresUri"] == \
        features["status"]["latestOutputUri"]
    assert lineage["image"] == IMAGE
    assert lineage["parameters"] == {"quality": "0.9", "depth": "4"}
    assert lineage["metrics"] == {"auc": 0.9, "rows": 20.0}
    gates = {g["name"]: g for g in approved["status"]["gates"]}
    assert gates["metric auc"]["verdict"] == "Passed"
    assert gates["signature"]["observed"] == "amount"
    assert gates["featuresReady"]["verdict"] == "Passed"
    registry = Registry(services.endpoints["mlflow"])
    version = registry.client.get_model_version(model, approved["status"]["mlflowVersion"])
    assert version.run_id == run["status"]["mlflowRunId"]

    rejected = wait_for(lambda: (o := get(cluster, namespace, "ModelVersion", f"{model}-weak"))
                        ["status"].get("phase") == "Rejected" and o, timeout=120, interval=1,
                        message="ModelVersion of the weak run Rejected")
    gate = next(g for g in rejected["status"]["gates"] if g["name"] == "metric auc")
    assert (gate["verdict"], gate["observed"], gate["threshold"]) == ("Failed", "0.6", ">= 0.8")

    # Deleting the run leaves its ModelVersion, which stays Approved when it reconciles again
    # (a spec change forces that) and is still registered once.
    cluster.kubectl("delete", "trainingrun.ferry.dev", "good", "-n", namespace)
    cluster.kubectl("patch", "modelversion.ferry.dev", mv_name, "-n", namespace, "--type=merge",
                    "-p", json.dumps({"spec": {"description": "the run is gone"}}))
    after = wait_for(lambda: (o := get(cluster, namespace, "ModelVersion", mv_name))
                     ["status"].get("observedGeneration") == 2 and o, timeout=60,
                     message="ModelVersion reconciled after its run was deleted")
    assert after["metadata"]["uid"] == approved["metadata"]["uid"]
    assert after["status"]["phase"] == "Approved"
    assert after["status"]["lineage"]["runId"] == run["status"]["mlflowRunId"]
    assert len(registry.client.search_model_versions(f"name = '{model}'")) == 2
