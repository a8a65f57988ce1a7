"""The retraining trigger: once per drift report, cooldown, maxConcurrent, restart safety."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from ferry.api.inferenceservice import Retrain
from ferry.reconcilers.retrain import RetrainDecision, decide_retrain, retrain_labels

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
INFSVC = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
          "metadata": {"name": "fraud", "namespace": "team-a", "uid": "u-1"}}
TEMPLATE = {"image": "trainer:1", "command": ["python", "train.py"],
            "register": {"modelName": "fraud"}}
RETRAIN = Retrain(template=TEMPLATE, cooldown="6h", maxConcurrent=1)


def drift(report="s3://b/drift/fraud/run-7/drift.json", verdict="Drifted") -> dict:
    return {"verdict": verdict, "time": "2026-11-22T11:59:00Z", "reportUri": report,
            "htmlReportUri": report.replace(".json", ".html"),
            "driftedFeatures": {"amount": 0.4, "country": 0.2}}


def run(name: str, phase: str | None = "Running", report: str = "s3://old") -> dict:
    return {"metadata": {"name": name, "annotations": {"ferry.dev/drift-report": report},
                         "creationTimestamp": "2026-11-22T11:00:00Z"},
            "status": {"phase": phase} if phase else {}}


def test_drift_triggers_a_run_from_the_template_with_the_trigger_recorded():
    decision = decide_retrain(INFSVC, drift(), RETRAIN, None, [], NOW, feature_pipeline="tx-v1",
                              feature_output_uri="s3://b/features/tx/v1/run-9/")
    run = decision.run
    assert run["kind"] == "TrainingRun" and run["metadata"]["name"] == "fraud-retrain-1"
    assert run["metadata"]["namespace"] == "team-a"
    assert run["metadata"]["labels"] == retrain_labels("fraud")
    assert run["spec"] == {**TEMPLATE, "features": "tx-v1"}
    annotations = run["metadata"]["annotations"]
    assert annotations["ferry.dev/drift-report"] == drift()["reportUri"]
    assert annotations["ferry.dev/drift-html-report"].endswith("drift.html")
    assert json.loads(annotations["ferry.dev/drifted-features"]) == {"amount": 0.4, "country": 0.2}
    assert annotations["ferry.dev/features-uri"] == "s3://b/features/tx/v1/run-9/"
    assert decision.status == {
        "reportUri": drift()["reportUri"], "decision": "Triggered", "count": 1,
        "lastRun": "fraud-retrain-1", "lastTriggerTime": "2026-11-22T12:00:00Z",
        "driftedFeatures": {"amount": 0.4, "country": 0.2},
        "message": decision.events[0].message}
    assert [e.reason for e in decision.events] == ["RetrainTriggered"]
    assert "amount, country" in decision.events[0].message


def test_template_features_are_kept():
    template = {**TEMPLATE, "features": "custom"}
    decision = decide_retrain(INFSVC, drift(), Retrain(template=template), None, [], NOW,
                              feature_pipeline="tx-v1")
    assert decision.run["spec"]["features"] == "custom"


def test_nothing_happens_without_drift_or_without_retrain():
    for summary in (None, drift(verdict="NoDrift"), drift(verdict="Inconclusive")):
        assert decide_retrain(INFSVC, summary, RETRAIN, None, [], NOW) == RetrainDecision(None, None)
    assert decide_retrain(INFSVC, drift(), None, None, [], NOW).run is None


def test_each_report_is_decided_once():
    first = decide_retrain(INFSVC, drift(), RETRAIN, None, [], NOW)
    again = decide_retrain(INFSVC, drift(), RETRAIN, first.status, [run("fraud-retrain-1")],
                           NOW + timedelta(minutes=1))
    assert again.run is None and again.status is None and again.events == []


def test_second_drift_inside_the_cooldown_starts_nothing():
    first = decide_retrain(INFSVC, drift(), RETRAIN, None, [], NOW)
    finished = [run("fraud-retrain-1", "Succeeded", drift()["reportUri"])]
    later = decide_retrain(INFSVC, drift("s3://b/drift/fraud/run-8/drift.json"), RETRAIN,
                           first.status, finished, NOW + timedelta(hours=2))
    assert later.run is None
    assert later.status["decision"] == "Cooldown"
    assert later.status["lastRun"] == "fraud-retrain-1" and later.status["count"] == 1
    assert later.status["lastTriggerTime"] == first.status["lastTriggerTime"]
    assert [e.reason for e in later.events] == ["RetrainSuppressed"]
    assert "2026-11-22T18:00:00Z" in later.events[0].message
    # after the cooldown, the next drift report triggers run 2
    after = decide_retrain(INFSVC, drift("s3://b/drift/fraud/run-9/drift.json"), RETRAIN,
                           later.status, finished, NOW + timedelta(hours=7))
    assert after.run["metadata"]["name"] == "fraud-retrain-2"
    assert after.status["count"] == 2


def test_no_retrain_while_max_concurrent_runs_are_active():
    record = {"count": 3, "reportUri": "s3://old", "lastRun": "fraud-retrain-3",
              "lastTriggerTime": "2026-11-20T00:00:00Z"}
    decision = decide_retrain(INFSVC, drift(), RETRAIN, record, [run("fraud-retrain-3", None)], NOW)
    assert decision.run is None and decision.status["decision"] == "MaxConcurrent"
    assert "fraud-retrain-3" in decision.status["message"]
    two = Retrain(template=TEMPLATE, cooldown="1h", maxConcurrent=2)
    allowed = decide_retrain(INFSVC, drift(), two, record, [run("fraud-retrain-3")], NOW)
    assert allowed.run["metadata"]["name"] == "fraud-retrain-4"


def test_a_created_but_unrecorded_run_is_adopted_after_a_restart():
    created = run("fraud-retrain-1", "Running", drift()["reportUri"])
    decision = decide_retrain(INFSVC, drift(), RETRAIN, None, [created], NOW)
    assert decision.run is None
    assert decision.status["decision"] == "Triggered"
    assert decision.status["lastRun"] == "fraud-retrain-1" and decision.status["count"] == 1


def test_an_invalid_template_is_reported_not_created():
    bad = Retrain(template={"command": ["train"]})  # no image
    decision = decide_retrain(INFSVC, drift(), bad, None, [], NOW)
    assert decision.run is None and decision.status["decision"] == "InvalidTemplate"
    assert decision.events[0].type == "Warning"
    assert "image" in decision.status["message"]
