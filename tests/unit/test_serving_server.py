"""The HTTP surface of `ferry serve`, in process, with a small stand-in pyfunc model.

Routes, status codes, readiness before/after load, metrics labels and mirroring; the real MLflow
model, S3 and the subprocess lifecycle are covered in tests/integration/test_serve.py.
"""

import asyncio
import json
import threading

import numpy as np
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from ferry.serving.config import ServeConfig
from ferry.serving.model import LoadedModel
from ferry.serving.payload import ModelInputs
from ferry.serving.server import Server

SPLIT = {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, 2.0], [-3.0, 4.0]]}}


class Threshold:
    """Predicts 1 when a > 0; raises on a == 13 (a model bug); MLflow-like error on a == -99."""

    def predict(self, frame, params=None):
        if (frame["a"] == 13).any():
            raise ZeroDivisionError("unlucky row")
        if (frame["a"] == -99).any():
            error = ValueError("Incompatible input types for column a")
            error.error_code = "INVALID_PARAMETER_VALUE"
            raise error
        return (frame["a"] > 0).astype(np.int64).to_numpy()


def config(**env):
    return ServeConfig.from_env({"FERRY_MODEL_URI": "models:/fraud/3", **env})


def loaded(_uri=None):
    return LoadedModel(Threshold(), ModelInputs(("a", "b")),
                       [{"name": "a", "datatype": "FP64", "shape": [-1]}], [])


def run(scenario, server):
    async def main():
        client = TestClient(TestServer(server.app()))
        await client.start_server()
        try:
            return await scenario(client)
        finally:
            await client.close()
            await server.stop_background()
    return asyncio.run(main())


def samples(text, name):
    return {tuple(sorted(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples if s.name == name}


def test_readiness_turns_200_once_the_model_is_loaded():
    release = threading.Event()

    def slow_loader(uri):
        release.wait(10)
        return loaded()

    server = Server(config(), loader=slow_loader)

    async def scenario(client):
        loading = asyncio.ensure_future(server.load())
        before = [(await client.get(path)).status for path in
                  ("/v2/health/live", "/v2/health/ready", "/ping", "/health", "/v2/models/fraud/ready")]
        early = await client.post("/invocations", json=SPLIT)
        release.set()
        await loading
        after = [(await client.get(path)).status for path in
                 ("/v2/health/ready", "/ping", "/health", "/v2/models/fraud/ready")]
        return before, early.status, after

    before, early, after = run(scenario, server)
    assert before == [200, 503, 503, 503, 503]
    assert early == 503
    assert after == [200, 200, 200, 200]


def serving(scenario, **env):
    server = Server(config(**env), loader=loaded)

    async def with_model(client):
        await server.load()
        return await scenario(client)

    return run(with_model, server), server


def test_invocations_and_v2_infer_answer_the_models_predictions():
    async def scenario(client):
        mlflow_style = await (await client.post("/invocations", json=SPLIT)).json()
        v2 = await client.post("/v2/models/fraud/infer", json={"id": "q1", "inputs": [
            {"name": "a", "shape": [2], "datatype": "FP64", "data": [1.0, -3.0]},
            {"name": "b", "shape": [2], "datatype": "FP64", "data": [2.0, 4.0]}]})
        versioned = await client.post("/v2/models/fraud/versions/3/infer", json={"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [5.0, 6.0]}]})
        csv = await client.post("/invocations", data=b"a,b\n2,1\n", headers={"Content-Type": "text/csv"})
        return mlflow_style, v2.status, await v2.json(), await versioned.json(), await csv.json()

    (mlflow_style, status, v2, versioned, csv), _ = serving(scenario)
    assert mlflow_style["predictions"] == [1, 0] and len(mlflow_style["ids"]) == 2
    assert status == 200
    assert v2 == {"id": "q1", "model_name": "fraud", "model_version": "3", "outputs": [
        {"name": "predict", "datatype": "INT64", "shape": [2], "data": [1, 0]}],
        "parameters": {"ids": v2["parameters"]["ids"]}}
    assert versioned["outputs"][0]["data"] == [1]
    assert csv["predictions"] == [1]


def test_bad_requests_get_400_model_failures_500_unknown_models_404():
    async def scenario(client):
        answers = {}
        for name, (path, body, kind) in {
            "not json": ("/invocations", b"{", "application/json"),
            "no key": ("/invocations", b'{"rows": []}', "application/json"),
            "v2 shape": ("/v2/models/fraud/infer", json.dumps({"inputs": [
                {"name": "a", "shape": [3], "datatype": "FP64", "data": [1.0]}]}).encode(),
                "application/json"),
            "signature": ("/invocations", json.dumps({"inputs": [[-99.0, 1.0]]}).encode(),
                          "application/json"),
            "model bug": ("/invocations", json.dumps({"inputs": [[13.0, 1.0]]}).encode(),
                          "application/json"),
            "other model": ("/v2/models/churn/infer", b"{}", "application/json"),
            "other version": ("/v2/models/fraud/versions/9/infer", b"{}", "application/json"),
        }.items():
            response = await client.post(path, data=body, headers={"Content-Type": kind})
            answers[name] = (response.status, await response.json())
        return answers

    answers, _ = serving(scenario)
    assert answers["not json"][0] == 400 and "not valid JSON" in answers["not json"][1]["message"]
    assert answers["no key"][0] == 400 and "dataframe_split" in answers["no key"][1]["message"]
    assert answers["v2 shape"][0] == 400 and "needs 3 values" in answers["v2 shape"][1]["error"]
    assert answers["signature"][0] == 400 and "signature" in answers["signature"][1]["message"]
    assert answers["model bug"] == (500, {"error_code": "INTERNAL_ERROR",
                                          "message": "the model failed: ZeroDivisionError: unlucky row"})
    assert answers["other model"][0] == 404
    assert "'churn' is not served here" in answers["other model"][1]["error"]
    assert answers["other version"][0] == 404


def test_metadata_routes():
    async def scenario(client):
        return [await (await client.get(path)).json() for path in ("/v2/models/fraud", "/version", "/v2")]

    (model, version, server_meta), _ = serving(scenario)
    assert model["name"] == "fraud" and model["versions"] == ["3"] and model["inputs"][0]["name"] == "a"
    assert version["model"] == "fraud" and version["model_version"] == "3" and "mlflow" in version
    assert server_meta["name"] == "ferry"


def test_metrics_carry_model_version_route_and_code():
    async def scenario(client):
        for _ in range(3):
            await client.post("/invocations", json=SPLIT)
        await client.post("/invocations", data=b"{", headers={"Content-Type": "application/json"})
        await client.post("/v2/models/fraud/infer", json={"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [5.0, 6.0]}]})
        return await (await client.get("/metrics")).text()

    text, _ = serving(scenario)
    requests = samples(text, "ferry_serve_requests_total")
    base = (("model", "fraud"), ("version", "3"))
    assert requests[tuple(sorted(base + (("route", "/invocations"), ("code", "200"))))] == 3
    assert requests[tuple(sorted(base + (("route", "/invocations"), ("code", "400"))))] == 1
    assert requests[tuple(sorted(base + (("route", "/v2/models/{name}/infer"), ("code", "200"))))] == 1
    durations = samples(text, "ferry_serve_request_duration_seconds_count")
    assert durations[tuple(sorted(base + (("route", "/invocations"),)))] == 4
    assert samples(text, "ferry_serve_inflight_requests")[tuple(sorted(base))] == 1  # the scrape itself
    values = samples(text, "ferry_serve_prediction_value_bucket")
    # 3 requests × predictions [1, 0] + one [1]: four 1s and three 0s
    assert values[tuple(sorted(base + (("le", "0.0"),)))] == 3
    assert values[tuple(sorted(base + (("le", "0.95"),)))] == 3
    assert values[tuple(sorted(base + (("le", "1.0"),)))] == 7
    assert values[tuple(sorted(base + (("le", "+Inf"),)))] == 7
    assert samples(text, "ferry_serve_prediction_value_sum")[tuple(sorted(base))] == 4
    for name in ("ferry_serve_prediction_log_rows_total", "ferry_serve_prediction_log_dropped_total"):
        assert samples(text, name)[tuple(sorted(base))] == 0


def test_mirroring_forwards_a_share_and_the_client_sees_the_local_answer():
    received = []

    async def scenario(client):
        arrived = asyncio.Event()

        async def candidate(request):
            received.append((request.path, await request.json()))
            if len(received) == 2:
                arrived.set()
            return web.json_response({"predictions": ["from the candidate"]})

        app = web.Application()
        app.add_routes([web.post("/invocations", candidate), web.post("/v2/models/{name}/infer", candidate)])
        candidate_server = TestServer(app)
        await candidate_server.start_server()
        server.mirror.url = str(candidate_server.make_url("")).rstrip("/")
        answers = [await (await client.post("/invocations", json=SPLIT)).json() for _ in range(3)]
        await client.post("/v2/models/fraud/infer", json={"inputs": [
            {"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [5.0, 6.0]}]})
        await asyncio.wait_for(arrived.wait(), 10)
        await server.mirror.stop()
        text = await (await client.get("/metrics")).text()
        await candidate_server.close()
        return answers, text

    server = Server(config(FERRY_MIRROR_URL="http://127.0.0.1:1", FERRY_MIRROR_PERCENT="50"),
                    loader=loaded)

    async def with_model(client):
        server.start_background()
        await server.load()
        return await scenario(client)

    answers, text = run(with_model, server)
    assert [answer["predictions"] for answer in answers] == [[1, 0]] * 3
    assert [path for path, _ in received] == ["/invocations", "/v2/models/fraud/infer"]
    assert received[0][1] == SPLIT
    mirrored = samples(text, "ferry_serve_mirrored_total")
    assert mirrored[(("model", "fraud"), ("result", "ok"), ("version", "3"))] == 2


def test_mirroring_to_a_dead_candidate_counts_errors_and_drops():
    server = Server(config(FERRY_MIRROR_URL="http://127.0.0.1:9", FERRY_MIRROR_PERCENT="100",
                           FERRY_MIRROR_QUEUE_SIZE="1"), loader=loaded)

    async def scenario(client):
        server.start_background()
        await server.load()
        answers = [(await client.post("/invocations", json=SPLIT)).status for _ in range(5)]
        await server.mirror.stop()
        return answers, await (await client.get("/metrics")).text()

    answers, text = run(scenario, server)
    assert answers == [200] * 5
    mirrored = samples(text, "ferry_serve_mirrored_total")
    total = sum(mirrored.values())
    assert total == 5
    assert mirrored.get((("model", "fraud"), ("result", "error"), ("version", "3")), 0) >= 1


def test_while_draining_readiness_fails_but_predictions_are_still_answered():
    async def scenario(client):
        server.draining = True
        ready = [(await client.get(path)).status for path in ("/v2/health/ready", "/ping", "/health")]
        live = (await client.get("/v2/health/live")).status
        answer = await client.post("/invocations", json=SPLIT)
        return ready, live, answer.status, await answer.json(), answer.headers.get("Connection")

    server = Server(config(), loader=loaded)

    async def with_model(client):
        await server.load()
        return await scenario(client)

    ready, live, status, answer, connection = run(with_model, server)
    assert ready == [503, 503, 503] and live == 200
    assert status == 200 and answer["predictions"] == [1, 0]
    assert connection == "close", "keep-alive clients reconnect through the Service"
