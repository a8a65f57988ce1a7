"""`ferry serve` with 2 workers answers the standard OIP clients: tritonclient HTTP (binary tensor
extension, its default) and gRPC on the second port; one /metrics answer covers both workers."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from ferry_dev.processes import free_port

COLUMNS = [f"f{i}" for i in range(4)]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("oip")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(200, 4)), columns=COLUMNS)
    estimator = LogisticRegression().fit(frame, (frame["f0"] > 0).astype(int))
    path = folder / "model"
    mlflow.sklearn.save_model(estimator, str(path),
                              signature=infer_signature(frame, estimator.predict(frame)))
    port, grpc_port = free_port(), free_port()
    log = folder / "serve.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "ferry"), "serve", "--model-uri", str(path), "--host",
         "127.0.0.1", "--port", str(port), "--grpc-port", str(grpc_port), "--workers", "2",
         "--model-name", "clf"], stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "FERRY_MODEL_VERSION": "1"})
    deadline = time.monotonic() + 120
    while True:
        assert process.poll() is None, log.read_text()
        try:
            if requests.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).ok:
                break
        except requests.RequestException:
            pass
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.1)
    yield estimator, port, grpc_port, process
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0, log.read_text()


def rows():
    return np.random.default_rng(3).normal(size=(5, 4))


def test_tritonclient_http_binary_inputs_and_outputs(served):
    import tritonclient.http as httpclient

    estimator, port, _, _ = served
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
    tensor = httpclient.InferInput("input", [5, 4], "FP64")
    tensor.set_data_from_numpy(rows())  # binary_data=True: the client's default
    for binary in (True, False):
        answer = client.infer("clf", [tensor], model_version="1",
                              outputs=[httpclient.InferRequestedOutput("predict", binary_data=binary)])
        assert answer.as_numpy("predict").tolist() == estimator.predict(rows()).tolist()
    assert client.is_server_ready() and client.is_model_ready("clf")


def test_tritonclient_grpc_and_errors(served):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    estimator, _, grpc_port, _ = served
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("clf")
    tensor = grpcclient.InferInput("input", [5, 4], "FP64")
    tensor.set_data_from_numpy(rows())
    answer = client.infer("clf", [tensor], request_id="r7")
    assert answer.as_numpy("predict").tolist() == estimator.predict(rows()).tolist()
    assert answer.get_response().id == "r7"
    assert client.get_model_metadata("clf").name == "clf"
    with pytest.raises(InferenceServerException, match="not served here"):
        client.infer("other", [tensor])
    bad = grpcclient.InferInput("input", [5, 3], "FP64")
    bad.set_data_from_numpy(rows()[:, :3])
    with pytest.raises(InferenceServerException, match="does not match|missing"):
        client.infer("clf", [bad])


def test_metrics_sum_over_both_workers(served):
    import tritonclient.http as httpclient

    _, port, _, process = served
    workers = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True).stdout.split()
    assert len(workers) == 1, "worker 0 is the parent of one sibling"
    before = infer_count(port)
    # New connections each time: the kernel spreads them over both workers (SO_REUSEPORT).
    for _ in range(40):
        client = httpclient.InferenceServerClient(f"127.0.0.1:{port}")
        tensor = httpclient.InferInput("input", [1, 4], "FP64")
        tensor.set_data_from_numpy(rows()[:1])
        client.infer("clf", [tensor])
        client.close()
    assert infer_count(port) - before == 40


def infer_count(port):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples if sample.name == "ferry_serve_requests_total"
               and sample.labels["route"].endswith("/infer") and sample.labels["code"] == "200")
