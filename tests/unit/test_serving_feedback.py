"""Prediction ids (kept, generated, returned, never a feature), ids and class probabilities in the
prediction log, and labels sent to ``/v2/models/{name}/feedback``; S3 is an in-memory store."""

import asyncio
import gc
import io
import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from aiohttp.test_utils import TestClient, TestServer

from ferry.quality.labels import read_labels
from ferry.serving import ids
from ferry.serving import model as model_loader
from ferry.serving.config import ServeConfig
from ferry.serving.feedback import MAX_LABELS, FeedbackError, parse_feedback
from ferry.serving.model import LoadedModel, Probabilities
from ferry.serving.payload import Frame, ModelInputs, PayloadError
from ferry.serving.server import Server

LOG = "s3://bucket/predictions/prod/fraud"
RECEIVED_MS = 1_795_000_000_000


class Store:
    """What would go to S3, in memory, with the listing ``ObjectStore`` gives."""

    def __init__(self, fail=False):
        self.objects, self.fail = {}, fail

    def put_bytes(self, uri, data):
        if self.fail:
            raise ConnectionError("S3 is down")
        self.objects[uri] = data

    def get_bytes(self, uri):
        return self.objects.get(uri)

    def list(self, prefix):
        from datetime import UTC, datetime

        return [{"uri": uri, "size": len(data), "modified": datetime(2026, 1, 1, tzinfo=UTC)}
                for uri, data in sorted(self.objects.items()) if uri.startswith(prefix)]

    def tables(self, part):
        return [pq.read_table(io.BytesIO(data)) for uri, data in self.objects.items() if part in uri]


class Recorder:
    """Predicts 1 when a > 0 and records the columns it was given; probabilities [1-p, p]."""

    def __init__(self):
        self.seen = []

    def predict(self, frame, params=None):
        self.seen.append(list(frame.columns))
        return (frame["a"] > 0).astype(np.int64).to_numpy()

    def predict_proba(self, frame):
        self.seen.append(list(frame.columns))
        p = np.where(frame["a"] > 0, 0.8, 0.3)
        return np.column_stack([1 - p, p])


def serving(scenario, log=True, store=None, **env):
    recorder = Recorder()
    settings = {"FERRY_MODEL_URI": "models:/fraud/3", "FERRY_PREDICTION_SAMPLE_RATE": "1", **env}
    if log:
        settings["FERRY_PREDICTION_LOG_URI"] = LOG
    server = Server(ServeConfig.from_env(settings), loader=lambda _uri: LoadedModel(
        recorder, ModelInputs(("a", "b")), [], [],
        probabilities=Probabilities(("0", "1"), recorder.predict_proba)))
    store = store or Store()
    if log:
        server.prediction_log._store = store
        server.labels._store = store

    async def main():
        client = TestClient(TestServer(server.app()))
        await client.start_server()
        server.start_background()
        try:
            await server.load()
            return await scenario(client)
        finally:
            await client.close()
            await server.stop_background()
    return asyncio.run(main()), recorder, store


async def answer(response):
    return response.status, await response.json(), response.headers.get(ids.HEADER)


def test_client_ids_are_kept_returned_and_never_reach_the_model():
    async def scenario(client):
        split = await client.post("/invocations", json={"dataframe_split": {
            "columns": ["id", "a", "b"], "data": [["tx-1", 1.0, 2.0], ["tx-2", -3.0, 4.0]]}})
        records = await client.post("/invocations", json={"dataframe_records": [
            {"a": 1.0, "b": 2.0, "id": 41}]})
        csv = await client.post("/invocations", data=b"a,b,id\n2,1,x9\n",
                                headers={"Content-Type": "text/csv"})
        v2_params = await client.post("/v2/models/fraud/infer", json={"parameters": {"ids": ["p1", 7]},
                                                                      "inputs": [
            {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 2.0, -1.0, 0.0]}]})
        v2_tensor = await client.post("/v2/models/fraud/infer", json={"inputs": [
            {"name": "id", "shape": [1], "datatype": "BYTES", "data": ["t1"]},
            {"name": "a", "shape": [1], "datatype": "FP64", "data": [2.0]},
            {"name": "b", "shape": [1], "datatype": "FP64", "data": [0.0]}]})
        v2_request = await client.post("/v2/models/fraud/infer", json={"id": "req-5", "inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]})
        return [await answer(r) for r in (split, records, csv, v2_params, v2_tensor, v2_request)]

    (split, records, csv, v2_params, v2_tensor, v2_request), recorder, _ = serving(scenario)
    assert split[:2] == (200, {"predictions": [1, 0], "ids": ["tx-1", "tx-2"]}) and split[2] is None
    assert records == (200, {"predictions": [1], "ids": ["41"]}, "41")
    assert csv == (200, {"predictions": [1], "ids": ["x9"]}, "x9")
    assert v2_params[1]["parameters"] == {"ids": ["p1", "7"]} and v2_params[2] is None
    assert v2_params[1]["outputs"][0]["data"] == [1, 0]
    assert v2_tensor[1]["parameters"] == {"ids": ["t1"]} and v2_tensor[2] == "t1"
    assert v2_request[1]["parameters"] == {"ids": ["req-5"]} and v2_request[2] == "req-5"
    assert all(columns == ["a", "b"] for columns in recorder.seen), recorder.seen


def test_rows_without_ids_get_distinct_generated_ones():
    async def scenario(client):
        many = await client.post("/invocations", json={"dataframe_split": {
            "columns": ["a", "b"], "data": [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]}})
        one = await client.post("/v2/models/fraud/infer", json={"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1.0, 2.0]}]})
        return await answer(many), await answer(one)

    (many, one), _, _ = serving(scenario)
    generated = many[1]["ids"] + one[1]["parameters"]["ids"]
    assert len(set(generated)) == 4 and all(len(i) == 32 and int(i, 16) >= 0 for i in generated)
    assert many[2] is None and one[2] == one[1]["parameters"]["ids"][0]


def test_bad_ids_are_400():
    async def scenario(client):
        bad = [
            {"dataframe_split": {"columns": ["id", "a", "b"], "data": [[None, 1.0, 2.0]]}},
            {"dataframe_records": [{"id": True, "a": 1.0, "b": 2.0}]},
            {"dataframe_split": {"columns": ["id"], "data": [["only"]]}},
        ]
        answers = [await answer(await client.post("/invocations", json=body)) for body in bad]
        v2 = [{"parameters": {"ids": ["one"]}, "inputs": [
                  {"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1.0, 2.0, 3.0, 4.0]}]},
              {"parameters": {"ids": ["p"]}, "inputs": [
                  {"name": "id", "shape": [1], "datatype": "BYTES", "data": ["t"]},
                  {"name": "a", "shape": [1], "datatype": "FP64", "data": [2.0]}]}]
        answers += [await answer(await client.post("/v2/models/fraud/infer", json=body)) for body in v2]
        return answers

    answers, _, _ = serving(scenario)
    assert [status for status, _, _ in answers] == [400] * 5
    messages = [body.get("message") or body.get("error") for _, body, _ in answers]
    assert "id of row 0" in messages[0] and "boolean" in messages[1]
    assert "only the id column" in messages[2]
    assert "one string or integer per row (2 rows)" in messages[3]
    assert "given twice" in messages[4]


def test_only_ids_a_header_can_carry_go_into_one():
    assert ids.header(["tx-1"]) == {ids.HEADER: "tx-1"}
    assert ids.header(["a\r\nSet-Cookie: x"]) == {} and ids.header(["zürich"]) == {}
    assert ids.header(["a", "b"]) == {}


def test_a_column_the_signature_names_stays_a_feature_and_is_the_id():
    frame = Frame("block", np.array([[7.0, 1.0]]), ("id", "a"), 1)
    kept, found = ids.take(frame, "id", ModelInputs(("id", "a")))
    assert kept is frame and found == ["7"]
    dropped, _ = ids.take(frame, "id", ModelInputs(("a",)))
    assert dropped.columns == ("a",) and dropped.data.tolist() == [[1.0]]
    renamed, found = ids.take(frame, "order", ModelInputs(("a",)))
    assert renamed is frame and found is None
    with pytest.raises(PayloadError, match="row 0"):
        ids.take(Frame("block", np.array([[np.nan, 1.0]]), ("id", "a"), 1), "id", ModelInputs())


def test_the_prediction_log_has_ids_versions_times_inputs_outputs_and_probabilities():
    async def scenario(client):
        await client.post("/invocations", json={"dataframe_split": {
            "columns": ["id", "a", "b"], "data": [["tx-1", 1.0, 2.0], ["tx-2", -3.0, 4.0]]}})
        generated = await client.post("/v2/models/fraud/infer", json={"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [5.0, 6.0]}]})
        return (await generated.json())["parameters"]["ids"]

    generated, _, store = serving(scenario, FERRY_PREDICTION_LOG_BATCH_ROWS="100")
    [table] = store.tables("/dt=")
    assert table.column_names == ["a", "b", "prediction", "ferry_model_version", "ferry_timestamp",
                                  "ferry_prediction_id", "ferry_proba_0", "ferry_proba_1"]
    rows = table.to_pylist()
    assert [r["ferry_prediction_id"] for r in rows] == ["tx-1", "tx-2", *generated]
    assert [r["a"] for r in rows] == [1.0, -3.0, 5.0] and [r["prediction"] for r in rows] == [1, 0, 1]
    assert [r["ferry_proba_1"] for r in rows] == pytest.approx([0.8, 0.3, 0.8])
    assert [r["ferry_proba_0"] for r in rows] == pytest.approx([0.2, 0.7, 0.2])
    assert {r["ferry_model_version"] for r in rows} == {"3"}
    assert table.schema.field("ferry_timestamp").type == pa.timestamp("ms", tz="UTC")


def test_the_drift_monitor_still_reads_the_log_and_ignores_ids_and_probabilities(tmp_path):
    from ferry.api.inferenceservice import DriftMonitor
    from ferry.drift.data import ParquetDataset
    from ferry.drift.engine import monitored_columns

    async def scenario(client):
        await client.post("/invocations", json={"dataframe_split": {
            "columns": ["id", "a", "b"], "data": [["tx-1", 1.0, 2.0], ["tx-2", -3.0, 4.0]]}})

    _, _, store = serving(scenario)
    [(uri, data)] = [(u, d) for u, d in store.objects.items() if "/dt=" in u]
    (tmp_path / "log.parquet").write_bytes(data)
    dataset = ParquetDataset.open(str(tmp_path / "log.parquet"))
    assert monitored_columns(DriftMonitor(), list(dataset.schema)) == ["a", "b"]
    assert dataset.read_column("a").to_pylist() == [1.0, -3.0]


def test_failing_probabilities_leave_the_rows_logged_without_them():
    from ferry.serving.predlog import Entry, combine

    def broken(frame):
        raise ValueError("no probabilities today")

    frame = Frame("block", np.array([[1.0, 2.0]]), ("a", "b"), 1)
    [table] = combine([Entry(frame, np.array([1]), RECEIVED_MS, ["r1"])], "3",
                      probabilities=Probabilities(("0", "1"), broken))
    assert table.column_names[-1] == "ferry_prediction_id"
    assert table.column("ferry_prediction_id").to_pylist() == ["r1"]


@pytest.fixture
def collector_unfrozen():
    """``model.load`` freezes the garbage collector, for a server; the test process undoes that."""
    yield
    gc.unfreeze()


def test_the_sklearn_fast_path_exposes_a_classifiers_probabilities(tmp_path, collector_unfrozen):
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression, LogisticRegression

    rng = np.random.default_rng(5)
    train = pd.DataFrame({"a": rng.normal(size=60), "b": rng.normal(size=60)})
    labels = np.where(train["a"] > 0, "yes", "no")
    classifier = LogisticRegression().fit(train, labels)

    def saved(name, estimator, **options):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mlflow.sklearn.save_model(estimator, str(tmp_path / name), pip_requirements=[],
                                      signature=infer_signature(train, estimator.predict(train)), **options)
        return model_loader.load(str(tmp_path / name))

    model = saved("classifier", classifier)
    assert model.probabilities.classes == ("no", "yes")
    frame = Frame("block", train.to_numpy()[:5], ("a", "b"), 5)
    assert np.allclose(model.probabilities.of(frame), classifier.predict_proba(train[:5]))
    assert saved("regressor", LinearRegression().fit(train, train["a"])).probabilities is None
    assert saved("scores", classifier, pyfunc_predict_fn="predict_proba").probabilities is None


def feedback(body):
    return parse_feedback(json.dumps(body).encode(), RECEIVED_MS)


def test_feedback_is_stored_as_one_new_object_per_request_and_read_back():
    async def scenario(client):
        first = await client.post("/v2/models/fraud/feedback", json={"labels": [
            {"id": "tx-1", "label": 1, "time": "2026-11-22T10:00:00Z"}, {"id": 42, "label": 0}]})
        second = await client.post("/v2/models/fraud/feedback", json={"labels": [
            {"id": "tx-1", "label": 0, "time": "2026-11-22T10:30:00+01:00"}]})
        return [(r.status, await r.json()) for r in (first, second)]

    answers, _, store = serving(scenario)
    assert answers == [(200, {"accepted": 2}), (200, {"accepted": 1})]
    keys = sorted(u for u in store.objects if "/labels/" in u)
    assert len(keys) == 2
    assert all(k.startswith(f"{LOG}/labels/dt=") and "/feedback-" in k for k in keys)
    labels = read_labels(f"{LOG}/labels/", store).to_pylist()
    # 10:30+01:00 is 09:30Z, before the first label's 10:00Z: the first one stays
    assert [(row["id"], row["label"]) for row in labels] == [("42", 0), ("tx-1", 1)]
    assert labels[1]["time"].isoformat() == "2026-11-22T10:00:00+00:00"


def test_feedback_without_a_prediction_log_unknown_models_and_store_outages():
    async def scenario(client):
        answer = await client.post("/v2/models/fraud/feedback", json={"labels": [{"id": "a", "label": 1}]})
        return answer.status, await answer.json()

    status, body = serving(scenario, log=False)[0]
    assert status == 409 and "FERRY_PREDICTION_LOG_URI" in body["error"]

    async def elsewhere(client):
        answer = await client.post("/v2/models/other/feedback", json={"labels": [{"id": "a", "label": 1}]})
        return answer.status

    assert serving(elsewhere)[0] == 404
    (status, body), _, _ = serving(scenario, store=Store(fail=True))
    assert status == 503 and "could not be stored" in body["error"] and "S3 is down" in body["error"]


@pytest.mark.parametrize(("body", "problem"), [
    ({"labels": [{"id": "a", "label": 1}], "extra": 1}, "unknown field 'extra'"),
    ({"labels": [{"id": "a", "label": 1, "score": 0.5}]}, "labels[0]: unknown field 'score'"),
    ({"labels": [{"id": "a", "label": 1}, {"label": 1}]}, "labels[1].id is missing"),
    ({"labels": [{"id": "a"}]}, "labels[0].label is missing"),
    ({"labels": [{"id": True, "label": 1}]}, "labels[0].id must be a non-empty string or an integer"),
    ({"labels": [{"id": "", "label": 1}]}, "labels[0].id must be a non-empty string or an integer"),
    ({"labels": [{"id": "a", "label": [1]}]}, "labels[0].label must be a number, string or boolean"),
    ({"labels": [{"id": "a", "label": None}]}, "labels[0].label must be a number, string or boolean"),
    ({"labels": [{"id": "a", "label": 1}, {"id": "b", "label": "x"}]}, "labels[1].label is a string"),
    ({"labels": [{"id": "a", "label": 1, "time": "yesterday"}]}, "labels[0].time must be an RFC 3339"),
    ({"labels": [{"id": "a", "label": 1, "time": "2026-11-22T10:00:00"}]}, "labels[0].time must be an RFC"),
    ({"labels": [{"id": "a", "label": 1, "time": 1700000000}]}, "labels[0].time must be an RFC 3339"),
    ({"labels": []}, f"labels must be a list of 1 to {MAX_LABELS} objects"),
    ({"labels": [{"id": "a", "label": 1}] * (MAX_LABELS + 1)}, "labels must be a list of 1 to"),
    ({"labels": ["a"]}, "labels[0] must be an object"),
    ([1], "the body must be a JSON object"),
])
def test_each_bad_feedback_is_refused_naming_the_item_and_field(body, problem):
    with pytest.raises(FeedbackError) as refused:
        feedback(body)
    assert problem in str(refused.value)


def test_bad_feedback_is_a_400_and_stores_nothing():
    async def scenario(client):
        bad = await client.post("/v2/models/fraud/feedback", json={"labels": [
            {"id": "a", "label": 1}, {"id": "b", "label": 1, "time": "soon"}]})
        broken = await client.post("/v2/models/fraud/feedback", data=b"{")
        return [(r.status, (await r.json())["error"]) for r in (bad, broken)]

    answers, _, store = serving(scenario)
    assert answers[0][0] == 400 and "labels[1].time" in answers[0][1]
    assert answers[1][0] == 400 and "not valid JSON" in answers[1][1]
    assert not [u for u in store.objects if "/labels/" in u]


def test_feedback_tables_have_the_label_reader_columns():
    table = feedback({"labels": [{"id": 7, "label": 0.5}, {"id": "b", "label": 1,
                                                            "time": "2026-11-22T10:00:00.250Z"}]})
    assert table.schema == pa.schema([("id", pa.string()), ("label", pa.float64()),
                                      ("time", pa.timestamp("ms", tz="UTC"))])
    assert table.column("id").to_pylist() == ["7", "b"]
    assert [t.value for t in table.column("time")] == [RECEIVED_MS, 1_795_341_600_250]
