"""S3 failures reach the operator as ObjectStoreUnavailable, a missing object as None (real boto3)."""

import boto3
import pytest
from botocore.config import Config

from ferry.adapters.s3 import ObjectStore, ObjectStoreUnavailable
from ferry_dev.processes import free_port


def store(**credentials) -> ObjectStore:
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{free_port()}", region_name="us-east-1",
                          config=Config(retries={"max_attempts": 1}, connect_timeout=1), **credentials)
    return ObjectStore(client)


def test_unreachable_endpoint_is_unavailable_not_a_crash():
    with pytest.raises(ObjectStoreUnavailable, match="s3://b/latest.json"):
        store(aws_access_key_id="a", aws_secret_access_key="b").get_json("s3://b/latest.json")


def test_missing_credentials_are_unavailable(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(ObjectStoreUnavailable):
        store().get_bytes("s3://b/k")


def test_an_unreadable_store_becomes_a_condition_with_one_event():
    import kopf

    from ferry.controllers.featurepipeline import STORE_RETRY, store_unavailable
    from ferry.reconcilers.outcome import Outcome
    from ferry.status import find_condition

    body = kopf.Body({"metadata": {"name": "fp", "generation": 2}, "status": {}})
    first = store_unavailable(body, Outcome(status={"conditions": []}), "s3://b/k: no credentials")
    condition = find_condition(first.status["conditions"], "OutputsReadable")
    assert (condition["status"], condition["reason"]) == ("False", "ObjectStoreUnavailable")
    assert [e.reason for e in first.events] == ["ObjectStoreUnavailable"]
    assert first.requeue_after == STORE_RETRY
    again = kopf.Body({"metadata": {"name": "fp", "generation": 2}, "status": first.status})
    assert store_unavailable(again, Outcome(status={"conditions": []}), "still down").events == []
