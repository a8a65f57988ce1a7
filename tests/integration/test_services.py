"""The real services the later capabilities use: S3 through boto3, MLflow, Prometheus."""

from __future__ import annotations

import json
import os
import urllib.parse
import urllib.request

import pytest

from ferry_dev.services import BUCKET, DevServices
from support.waiting import wait_for


def query(services, promql: str) -> list:
    url = f"{services.endpoints['prometheus']}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql})
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)["data"]["result"]


def test_s3_round_trip_including_multipart(services):
    s3 = services.s3_client()
    s3.put_object(Bucket=BUCKET, Key="small/hello.txt", Body=b"hello")
    assert s3.get_object(Bucket=BUCKET, Key="small/hello.txt")["Body"].read() == b"hello"
    payload = os.urandom(6 * 1024 * 1024)
    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="big/blob")
    parts = []
    for number, start in enumerate(range(0, len(payload), 5 * 1024 * 1024), start=1):
        part = s3.upload_part(Bucket=BUCKET, Key="big/blob", UploadId=upload["UploadId"],
                              PartNumber=number, Body=payload[start:start + 5 * 1024 * 1024])
        parts.append({"ETag": part["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(Bucket=BUCKET, Key="big/blob", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})
    assert s3.get_object(Bucket=BUCKET, Key="big/blob")["Body"].read() == payload
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="big/")["Contents"]]
    assert keys == ["big/blob"]


def test_mlflow_tracks_runs_with_artifacts_in_s3_and_registers_models(services, tmp_path,
                                                                     monkeypatch):
    import mlflow
    from mlflow.tracking import MlflowClient

    for key, value in services.env().items():
        monkeypatch.setenv(key, value)
    client = MlflowClient(services.endpoints["mlflow"])
    experiment = client.create_experiment("services-test")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "auc", 0.91)
    artifact = tmp_path / "notes.txt"
    artifact.write_text("trained")
    client.log_artifact(run.info.run_id, str(artifact))
    client.set_terminated(run.info.run_id)
    assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.91}
    keys = [o["Key"] for o in services.s3_client().list_objects_v2(
        Bucket=BUCKET, Prefix="mlflow/")["Contents"]]
    assert any(key.endswith(f"{run.info.run_id}/artifacts/notes.txt") for key in keys), keys
    client.create_registered_model("services-model")
    version = client.create_model_version("services-model", f"runs:/{run.info.run_id}/notes.txt",
                                          run.info.run_id)
    assert version.version == "1"
    assert mlflow.__version__


def test_prometheus_scrapes_the_pushgateway(services):
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    Gauge("ferry_services_probe", "test gauge", registry=registry).set(42)
    push_to_gateway(services.endpoints["pushgateway"].removeprefix("http://"), job="probe",
                    registry=registry)
    result = wait_for(lambda: query(services, "ferry_services_probe"), timeout=30,
                      message="pushed metric in Prometheus")
    assert float(result[0]["value"][1]) == 42


def test_prometheus_picks_up_targets_added_at_runtime(services):
    gateway = services.endpoints["pushgateway"].removeprefix("http://")
    services.add_scrape_targets([gateway], {"role": "runtime-target"})
    wait_for(lambda: query(services, 'up{job="ferry",role="runtime-target"} == 1'), timeout=30,
             message="file_sd target scraped")


def test_s3_refuses_a_wrong_key(services):
    """The S3 server checks credentials like a real one: nothing is read with a wrong secret."""
    import boto3
    from botocore.exceptions import ClientError

    from ferry_dev.services import ACCESS_KEY

    s3 = boto3.client("s3", endpoint_url=services.endpoints["s3"], aws_access_key_id=ACCESS_KEY,
                      aws_secret_access_key="not-the-secret", region_name="us-east-1")
    with pytest.raises(ClientError) as refused:
        s3.list_objects_v2(Bucket=BUCKET)
    assert refused.value.response["Error"]["Code"] in ("AccessDenied", "SignatureDoesNotMatch",
                                                       "InvalidAccessKeyId"), refused.value.response


def test_stop_leaves_no_process_behind(tmp_path):
    running = DevServices(tmp_path).start()
    pids = [s.pid for s in running.services]
    assert len(pids) == 4
    DevServices.stop_from_state(tmp_path)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
