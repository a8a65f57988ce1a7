"""`ferry serve` as a real subprocess against the real MLflow server and the real S3.

Two models are logged to MLflow here: a scikit-learn LogisticRegression trained on synthetic data
(its answers must equal the model's own ``predict``), and a small pyfunc "probe" that takes 2 s to
load, answers 42.0 for every row and sleeps ``delay`` seconds when asked: it makes the readiness
window, in-flight draining and mirroring observable without timing guesses.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ferry.adapters.s3 import ObjectStore
from ferry_dev.processes import free_port
from support.environ import services_environment
from support.waiting import wait_for

FEATURES = [f"f{i}" for i in range(4)]
FERRY = str(Path(sys.executable).parent / "ferry")


@pytest.fixture(scope="module")
def models(services, tmp_path_factory):
    """Log both models to the real MLflow server; returns URIs, names and reference predictions."""
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import make_classification
    from sklearn.linear_model import LogisticRegression

    class Probe(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            time.sleep(2)

        def predict(self, context, model_input, params=None):
            if "delay" in model_input:
                time.sleep(float(model_input["delay"].max()))
            return np.full(len(model_input), 42.0)

    with services_environment(services):
        mlflow.set_tracking_uri(services.endpoints["mlflow"])
        mlflow.set_experiment("serve-tests")
        features, labels = make_classification(n_samples=400, n_features=4, n_informative=3,
                                               n_redundant=0, random_state=0)
        train = pd.DataFrame(features, columns=FEATURES)
        classifier = LogisticRegression().fit(train, labels)
        name = f"serve-lr-{uuid.uuid4().hex[:6]}"
        with mlflow.start_run():
            info = mlflow.sklearn.log_model(classifier, name="model", registered_model_name=name,
                                            signature=infer_signature(train, classifier.predict(train)))
            probe = mlflow.pyfunc.log_model(name="probe", python_model=Probe())
        rng = np.random.default_rng(1)
        queries = pd.DataFrame(rng.normal(size=(40, 4)) * 2, columns=FEATURES)
        reference = mlflow.pyfunc.load_model(f"models:/{name}/1").predict(queries)
        store = ObjectStore(endpoint_url=services.env()["AWS_ENDPOINT_URL_S3"])
        artifacts = next(o["uri"] for o in store.list(f"s3://{services.env()['FERRY_S3_BUCKET']}/mlflow/")
                         if info.model_id in o["uri"] and o["uri"].endswith("/MLmodel"))
        return {"name": name, "uri": f"models:/{name}/1", "s3_uri": artifacts.rsplit("/", 1)[0],
                "probe_uri": probe.model_uri, "queries": queries, "reference": reference.tolist(),
                "store": store, "bucket": services.env()["FERRY_S3_BUCKET"]}


class Served:
    """A `ferry serve` subprocess on 127.0.0.1 and a free port."""

    def __init__(self, services, tmp_path: Path, model_uri: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / f"serve-{self.port}.log"
        self.process = subprocess.Popen(
            [FERRY, "serve", "--model-uri", model_uri, "--host", "127.0.0.1", "--port", str(self.port)],
            env={**os.environ, **services.env(), **env}, stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT)

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url + path, timeout=10)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(self.url + path, timeout=30, **kwargs)

    def wait_ready(self, timeout: float = 90) -> None:
        def ready():
            assert self.process.poll() is None, self.log.read_text()
            return self.get("/v2/health/ready").status_code == 200
        wait_for(ready, timeout=timeout, message=f"ferry serve ready ({self.log})")

    def metric(self, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(self.get("/metrics").text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return 0.0

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=60)


@pytest.fixture
def serve(services, tmp_path):
    started: list[Served] = []

    def start(model_uri: str, **env: str) -> Served:
        served = Served(services, tmp_path, model_uri, **env)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()


def split_body(frame) -> dict:
    return {"dataframe_split": {"columns": list(frame.columns), "data": frame.values.tolist()}}


def parquet_objects(models, prefix: str) -> list:
    import pyarrow.parquet as pq

    store = models["store"]
    return [(item["uri"], pq.read_table(io.BytesIO(store.get_bytes(item["uri"]))))
            for item in store.list(f"s3://{models['bucket']}/{prefix}/") if item["uri"].endswith(".parquet")]


def test_answers_equal_the_models_predict_and_sampled_rows_land_in_s3(models, serve):
    prefix = f"predictions/{uuid.uuid4().hex[:8]}"
    served = serve(models["uri"], FERRY_PREDICTION_LOG_URI=f"s3://{models['bucket']}/{prefix}",
                   FERRY_PREDICTION_SAMPLE_RATE="0.5", FERRY_PREDICTION_LOG_BATCH_ROWS="4",
                   FERRY_PREDICTION_LOG_FLUSH_SECONDS="0.5")
    served.wait_ready()
    queries, reference = models["queries"], models["reference"]

    # MLflow's formats, 4 rows per request: 10 requests in all
    answers = []
    for start in range(0, 40, 4):
        chunk = queries.iloc[start:start + 4]
        body = [split_body(chunk), {"dataframe_records": chunk.to_dict(orient="records")},
                {"instances": chunk.values.tolist()},
                {"inputs": chunk.to_dict(orient="list")}][start // 4 % 4]
        response = served.post("/invocations", json=body)
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    assert answers == reference
    csv = served.post("/invocations", data=queries.to_csv(index=False), headers={"Content-Type": "text/csv"})
    assert csv.json()["predictions"] == reference

    v2 = served.post(f"/v2/models/{models['name']}/infer", json={"id": "r-1", "inputs": [
        {"name": name, "shape": [40], "datatype": "FP64", "data": queries[name].tolist()}
        for name in FEATURES]})
    assert v2.status_code == 200 and v2.json()["id"] == "r-1"
    assert v2.json()["outputs"][0]["data"] == reference
    versioned = served.post(f"/v2/models/{models['name']}/versions/1/infer", json={"inputs": [
        {"name": "x", "shape": [40, 4], "datatype": "FP64", "data": queries.values.ravel().tolist()}]})
    assert versioned.json()["outputs"][0]["data"] == reference

    malformed = served.post("/invocations", headers={"Content-Type": "application/json"},
                            data=b'{"dataframe_split": {"columns": ["f0"], "data": [[1, 2]]}}')
    assert malformed.status_code == 400
    assert "has 2 values, expected 1" in malformed.json()["message"]
    missing_column = served.post("/invocations", json={"dataframe_split": {
        "columns": ["f0", "f1"], "data": [[1.0, 2.0]]}})
    assert missing_column.status_code == 400 and "signature" in missing_column.json()["message"]
    bad_v2 = served.post(f"/v2/models/{models['name']}/infer", json={"inputs": [{"name": "f0"}]})
    assert bad_v2.status_code == 400 and "lacks shape, datatype, data" in bad_v2.json()["error"]

    # 13 successful predictions, every second one sampled: requests 2, 4, ..., 12 (4 or 40 rows each)
    labels = {"model": models["name"], "version": "1"}
    expected_rows = 5 * 4 + 40
    wait_for(lambda: served.metric("ferry_serve_prediction_log_rows_total", **labels) == expected_rows,
             timeout=30, message="sampled rows written")
    tables = parquet_objects(models, prefix)
    assert tables and all(f"/{prefix}/dt=" in uri and "/1-" in uri for uri, _ in tables)
    import pyarrow as pa

    combined = pa.concat_tables([table for _, table in tables])
    assert combined.num_rows == expected_rows
    assert combined.column_names == [*FEATURES, "prediction", "ferry_model_version", "ferry_timestamp",
                                     "ferry_prediction_id", "ferry_proba_0", "ferry_proba_1"]
    assert len(set(combined.column("ferry_prediction_id").to_pylist())) == expected_rows
    for row in combined.to_pylist():
        assert row["ferry_proba_0"] + row["ferry_proba_1"] == pytest.approx(1.0)
        assert (row["ferry_proba_1"] > 0.5) == (row["prediction"] == 1)
    assert combined.schema.field("f0").type == pa.float64()
    assert combined.schema.field("ferry_timestamp").type == pa.timestamp("ms", tz="UTC")
    assert set(combined.column("ferry_model_version").to_pylist()) == {"1"}
    by_input = {tuple(row[f] for f in FEATURES): row["prediction"] for row in combined.to_pylist()}
    expected = {tuple(q): p for q, p in zip(queries.values.tolist(), reference, strict=True)}
    assert all(expected[key] == prediction for key, prediction in by_input.items())

    assert served.metric("ferry_serve_requests_total", route="/invocations", code="200", **labels) == 11
    assert served.metric("ferry_serve_requests_total", route="/invocations", code="400", **labels) == 2
    assert served.metric("ferry_serve_requests_total", route="/v2/models/{name}/infer", code="200",
                         **labels) == 1
    assert served.metric("ferry_serve_request_duration_seconds_count", route="/invocations", **labels) == 13
    assert served.metric("ferry_serve_prediction_value_count", **labels) == 40 * 4
    assert served.metric("ferry_serve_prediction_log_dropped_total", **labels) == 0
    assert served.stop() == 0


def test_readiness_waits_for_the_load_and_sigterm_drains_and_flushes(models, serve):
    prefix = f"predictions/{uuid.uuid4().hex[:8]}"
    served = serve(models["probe_uri"], FERRY_MODEL_NAME="probe", FERRY_MODEL_VERSION="7",
                   FERRY_PREDICTION_LOG_URI=f"s3://{models['bucket']}/{prefix}",
                   FERRY_PREDICTION_SAMPLE_RATE="1", FERRY_PREDICTION_LOG_FLUSH_SECONDS="600")
    wait_for(lambda: served.get("/v2/health/live").status_code == 200, timeout=60, message="live")
    # the probe takes 2 s to load: live, not ready, and no predictions yet
    assert served.get("/v2/health/ready").status_code == 503
    assert served.get("/ping").status_code == 503
    early = served.post("/invocations", json={"inputs": {"x": [1.0]}})
    assert early.status_code == 503 and "not loaded" in early.json()["message"]
    served.wait_ready()
    assert served.get("/v2/models/probe/ready").status_code == 200

    assert served.post("/invocations", json={"inputs": {"x": [1.0, 2.0]}}).json()["predictions"] == [
        42.0, 42.0]
    slow: dict = {}

    def slow_request():
        slow["response"] = served.post("/invocations", json={"inputs": {"x": [3.0], "delay": [2.0]}})

    client = threading.Thread(target=slow_request)
    client.start()
    # the scrape itself is one in-flight request; the slow one makes two
    wait_for(lambda: served.metric("ferry_serve_inflight_requests") == 2, timeout=10,
             interval=0.05, message="the slow request in flight")
    served.process.send_signal(signal.SIGTERM)
    client.join(30)
    assert slow["response"].status_code == 200 and slow["response"].json()["predictions"] == [42.0]
    assert served.process.wait(timeout=60) == 0
    with pytest.raises(requests.ConnectionError):
        served.get("/ping")
    # nothing was flushed before (600 s interval): both requests' rows were written at shutdown
    tables = parquet_objects(models, prefix)
    rows = [row for _, table in tables for row in table.to_pylist()]
    assert sorted(row["x"] for row in rows) == [1.0, 2.0, 3.0]
    assert {row["prediction"] for row in rows} == {42.0}
    assert {row["ferry_model_version"] for row in rows} == {"7"}
    assert all(uri.split("/")[-1].startswith("7-") for uri, _ in tables)


def test_mirroring_sends_a_share_to_the_candidate_and_clients_see_the_stable_answers(models, serve):
    candidate = serve(models["probe_uri"], FERRY_MODEL_NAME=models["name"], FERRY_MODEL_VERSION="2")
    stable = serve(models["s3_uri"], FERRY_MODEL_NAME=models["name"], FERRY_MODEL_VERSION="1",
                   FERRY_MIRROR_URL=f"http://127.0.0.1:{candidate.port}", FERRY_MIRROR_PERCENT="50")
    candidate.wait_ready()
    stable.wait_ready()  # loaded straight from S3 with boto3
    queries, reference = models["queries"], models["reference"]
    answers = []
    for start in range(0, 40, 4):
        response = stable.post("/invocations", json=split_body(queries.iloc[start:start + 4]))
        answers += response.json()["predictions"]
    assert answers == reference  # never the candidate's 42.0
    candidate_labels = {"model": models["name"], "version": "2"}
    wait_for(lambda: candidate.metric("ferry_serve_requests_total", route="/invocations", code="200",
                                      **candidate_labels) == 5, timeout=30, message="5 of 10 mirrored")
    wait_for(lambda: stable.metric("ferry_serve_mirrored_total", result="ok", version="1") == 5,
             timeout=10, message="mirror results counted")
    assert candidate.metric("ferry_serve_prediction_value_sum", **candidate_labels) == 42.0 * 20
    assert stable.metric("ferry_serve_mirrored_total", result="dropped", version="1") == 0
    assert stable.stop() == 0 and candidate.stop() == 0


def test_a_model_that_cannot_be_loaded_exits_non_zero(models, serve, tmp_path):
    served = serve(f"s3://{models['bucket']}/no-such-model-{uuid.uuid4().hex[:6]}")
    assert served.process.wait(timeout=90) == 1
    assert "could not load model" in served.log.read_text()
    bad_setting = subprocess.run([FERRY, "serve", "--model-uri", "models:/x/1"], capture_output=True,
                                 text=True, env={**os.environ, "FERRY_PREDICTION_SAMPLE_RATE": "2"})
    assert bad_setting.returncode == 2
    assert "FERRY_PREDICTION_SAMPLE_RATE must be between 0 and 1" in bad_setting.stderr
