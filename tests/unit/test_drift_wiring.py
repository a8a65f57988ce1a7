"""The pure helpers that wire the drift monitor and the retraining trigger into the
InferenceService reconcile (``controllers/drift.py``)."""

from __future__ import annotations

import pytest

from ferry.api.inferenceservice import InferenceServiceSpec
from ferry.controllers.drift import (
    awaits_decision, lineage, monitor_env, report_uri, retrain_spec, selector, wants_retrain)
from ferry.reconcilers.retrain import retrain_labels

SECRET_ENV = [{"name": key, "valueFrom": {"secretKeyRef": {"name": "s3", "key": key}}}
              for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
RETRAIN = {"template": {"image": "trainer:1", "command": ["train"]}, "cooldown": "1h"}


def spec(env=(), drift=None) -> InferenceServiceSpec:
    raw = {"model": {"modelName": "fraud"}, "runtime": {"env": list(env)}}
    if drift is not None:
        raw["monitoring"] = {"drift": drift}
    return InferenceServiceSpec.model_validate(raw)


def test_the_monitor_reads_s3_with_the_serving_pods_credentials_and_the_operator_endpoint():
    env = monitor_env(spec([*SECRET_ENV, {"name": "FERRY_PORT", "value": "9000"}]),
                      "http://s3.local:8333")
    assert env == [{"name": "AWS_ENDPOINT_URL_S3", "value": "http://s3.local:8333"}, *SECRET_ENV]


def test_an_endpoint_the_serving_pods_set_wins_over_the_operators():
    own = {"name": "AWS_ENDPOINT_URL_S3", "valueFrom": {"secretKeyRef": {"name": "s3",
                                                                          "key": "endpoint"}}}
    env = monitor_env(spec([own, *SECRET_ENV]), "http://s3.local:8333")
    assert env == [own, *SECRET_ENV]
    assert [e["name"] for e in env].count("AWS_ENDPOINT_URL_S3") == 1


def test_without_credentials_or_endpoint_the_monitor_gets_no_s3_env():
    assert monitor_env(spec(), None) == []


def test_reports_go_under_the_bucket_per_namespace_and_service():
    assert report_uri("ferry", "team-a", "fraud") == "s3://ferry/drift-reports/team-a/fraud"


@pytest.mark.parametrize("drift, record, expected", [
    ({"verdict": "Drifted", "reportUri": "s3://b/r/job-1/drift.json"}, None, True),
    ({"verdict": "Drifted", "reportUri": "s3://b/r/job-2/drift.json"},
     {"reportUri": "s3://b/r/job-1/drift.json", "decision": "Triggered"}, True),
    ({"verdict": "Drifted", "reportUri": "s3://b/r/job-1/drift.json"},
     {"reportUri": "s3://b/r/job-1/drift.json", "decision": "Cooldown"}, False),
    ({"verdict": "NoDrift", "reportUri": "s3://b/r/job-1/drift.json"}, None, False),
    ({"verdict": "Inconclusive", "reportUri": "s3://b/r/job-1/drift.json"}, None, False),
    ({"verdict": "Drifted"}, None, False),
    (None, None, False),
])
def test_only_a_new_drifted_report_awaits_a_retraining_decision(drift, record, expected):
    assert awaits_decision(drift, record) is expected


@pytest.mark.parametrize("raw, expected", [
    ({"monitoring": {"drift": {"onDrift": {"retrain": RETRAIN}}}}, True),
    ({"monitoring": {"drift": {"onDrift": {"retrain": None}}}}, False),
    ({"monitoring": {"drift": {"onDrift": None}}}, False),
    ({"monitoring": {"drift": None}}, False),
    ({"monitoring": None}, False),
    ({}, False),
])
def test_wants_retrain_reads_the_raw_spec_of_a_watch_event(raw, expected):
    assert wants_retrain(raw) is expected


def test_retrain_spec_is_the_validated_on_drift_retrain():
    assert retrain_spec(spec()) is None
    assert retrain_spec(spec(drift={"window": "1h"})) is None
    found = retrain_spec(spec(drift={"onDrift": {"retrain": RETRAIN}}))
    assert found.cooldown == "1h" and found.max_concurrent == 1
    assert found.template == RETRAIN["template"]


def test_the_selector_matches_exactly_the_retraining_labels():
    labels = retrain_labels("fraud")
    found = selector(labels)
    assert sorted(found.split(",")) == sorted(f"{k}={v}" for k, v in labels.items())
    assert "ferry.dev/inferenceservice=fraud" in found.split(",")


def test_lineage_of_a_missing_or_unregistered_model_version_is_empty():
    assert lineage(None) == {}
    assert lineage({"status": None}) == {}
    assert lineage({"status": {"lineage": {"dataUri": "s3://b/f/run-1/"}}}) == \
        {"dataUri": "s3://b/f/run-1/"}
