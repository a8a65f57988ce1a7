"""``spec.retrainPolicy``: each trigger fires (and does not), dedup exactly once, M of N, the
shared gates, restart safety, combined triggers, and the API rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from ferry.api.inferenceservice import InferenceServiceSpec, RetrainPolicy
from ferry.controllers.modelversion import retrain_tags
from ferry.controllers.retrain import observe
from ferry.reconcilers.retrain import retrain_labels
from ferry.reconcilers.retrain_policy import (
    EVIDENCE_ANNOTATION, TRIGGERS_ANNOTATION, Observed, awaits_decision, decide_policy,
    next_wake, requirements_hash)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TEMPLATE = {"image": "trainer:1", "command": ["python", "train.py"],
            "register": {"modelName": "fraud"}}
REPORT = "s3://b/drift/fraud/run-7/drift.json"
SNAPSHOT = "s3://b/features/tx/v1/run-3/"
SEEN = Observed(served_versions=("7", "fraud-7"), training_data_uri=SNAPSHOT,
                training_metrics={"accuracy": 0.9, "mae": 2.0}, feature_pipeline="tx",
                pipeline_spec={"version": "v1"}, pipeline_output_uri="s3://b/features/tx/v1/run-9/",
                pipeline_run_id="run-9", pipeline_rows=1000)


def policy(cooldown="6h", max_concurrent=1, daily_budget=3, template=TEMPLATE, **triggers):
    return RetrainPolicy.model_validate({"template": template, "cooldown": cooldown,
                                         "maxConcurrent": max_concurrent,
                                         "dailyBudget": daily_budget, "triggers": triggers})


def infsvc(drift=None, quality=None) -> dict:
    return {"metadata": {"name": "fraud", "namespace": "team-a"},
            "status": {k: v for k, v in (("drift", drift), ("quality", quality)) if v}}


def drifted(report=REPORT, reference="s3://elsewhere/") -> dict:
    return {"verdict": "Drifted", "reportUri": report, "referenceUri": reference,
            "driftedFeatures": {"amount": 0.4}}


def quality(run_id: str, value: float, estimated=False) -> dict:
    return {"runId": run_id, "versions": [{"version": "7", "verdict": "Degraded", "metrics": [
        {"name": "accuracy", "value": value, "estimated": estimated}]}]}


def run(name: str, phase: str | None = "Running", keys=(), created="2026-11-22T11:00:00Z") -> dict:
    evidence = {f"t{i}": {"key": key} for i, key in enumerate(keys)}
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": {EVIDENCE_ANNOTATION: json.dumps(evidence)}},
            "status": {"phase": phase} if phase else {}}


def decide(p, record=None, runs=(), observed=SEEN, now=NOW, **status):
    return decide_policy(infsvc(**status), p, record, list(runs), observed, now)


def test_drift_fires_a_run_with_triggers_evidence_and_labels():
    decision = decide(policy(drift={}), drift=drifted())
    created = decision.run
    assert created["metadata"]["name"] == "fraud-retrain-1"
    assert created["metadata"]["labels"] == retrain_labels("fraud")
    assert created["spec"] == {**TEMPLATE, "features": "tx"}
    annotations = created["metadata"]["annotations"]
    assert annotations[TRIGGERS_ANNOTATION] == "drift"
    evidence = json.loads(annotations[EVIDENCE_ANNOTATION])
    assert evidence["drift"]["key"] == f"drift:{REPORT}" and "amount" in evidence["drift"]["reason"]
    assert annotations["ferry.dev/features-uri"] == SEEN.pipeline_output_uri
    status = decision.status
    assert status["decision"] == "Triggered" and status["count"] == 1
    assert status["lastRun"] == "fraud-retrain-1" and status["triggers"] == ["drift"]
    assert status["decided"] == [f"drift:{REPORT}"] and status["runTimes"] == [
        "2026-11-22T12:00:00Z"]
    assert [(e.type, e.reason) for e in decision.events] == [("Normal", "RetrainTriggered")]
    assert "drift" in decision.events[0].message


def test_no_drifted_report_fires_nothing():
    for summary in (None, {**drifted(), "verdict": "NoDrift"}, {"verdict": "Drifted"}):
        decision = decide(policy(drift={}), drift=summary)
        assert decision.run is None and decision.events == []


def test_each_key_is_decided_exactly_once():
    first = decide(policy(drift={}), drift=drifted())
    again = decide(policy(drift={}), first.status, [run("fraud-retrain-1")],
                   now=NOW + timedelta(minutes=1), drift=drifted())
    assert again.run is None and again.status is None and again.events == []


def test_skew_fires_only_against_the_training_snapshot():
    p = policy(skew={})
    assert decide(p, drift=drifted()).run is None
    decision = decide(p, drift=drifted(reference=SNAPSHOT))
    evidence = json.loads(decision.run["metadata"]["annotations"][EVIDENCE_ANNOTATION])
    assert evidence["skew"]["key"] == f"skew:{REPORT}"
    assert "training-serving skew" in evidence["skew"]["reason"]


def test_performance_fires_on_m_of_the_last_n_evaluations():
    p = policy(performance={"metric": "accuracy", "min": 0.8, "windows": {"breaching": 2, "of": 3}})
    record = None
    for window, value in (("q1", 0.7), ("q2", 0.85)):
        decision = decide(p, record, quality=quality(window, value))
        assert decision.run is None
        record = decision.status
    assert [w["window"] for w in record["performanceWindows"]] == ["q1", "q2"]
    # the same report again is not a new evaluation
    assert decide(p, record, quality=quality("q2", 0.85)).status is None
    fired = decide(p, record, quality=quality("q3", 0.6))
    evidence = json.loads(fired.run["metadata"]["annotations"][EVIDENCE_ANNOTATION])
    assert evidence["performance"]["key"] == "performance:q3"
    assert evidence["performance"]["windows"] == ["q1", "q3"]
    assert "2 of the last 3" in evidence["performance"]["reason"]
    assert fired.status["performanceWindows"] == []  # the next firing needs fresh breaches


def test_performance_window_history_keeps_only_n():
    p = policy(performance={"metric": "accuracy", "min": 0.8, "windows": {"breaching": 2, "of": 2}})
    record = decide(p, quality=quality("q1", 0.7)).status
    record = decide(p, record, quality=quality("q2", 0.9)).status
    decision = decide(p, record, quality=quality("q3", 0.7))
    assert decision.run is None  # q1 has left the last 2
    assert [w["window"] for w in decision.status["performanceWindows"]] == ["q2", "q3"]


def test_drop_from_training_and_estimates():
    p = policy(performance={"metric": "accuracy", "dropFromTraining": 0.05})
    assert decide(p, quality=quality("q1", 0.86)).run is None
    assert decide(p, quality=quality("q1", 0.84)).run is not None
    no_estimates = policy(performance={"metric": "accuracy", "max": 0.5, "useEstimate": False})
    assert decide(no_estimates, quality=quality("q1", 0.9, estimated=True)).run is None
    assert decide(policy(performance={"metric": "accuracy", "max": 0.5}),
                  quality=quality("q1", 0.9, estimated=True)).run is not None
    unknown = Observed(served_versions=("7",))
    assert decide(p, observed=unknown, quality=quality("q1", 0.1)).run is None


def test_new_data_compares_with_the_training_snapshot_or_the_recorded_rows():
    p = policy(newData={"minRows": 500})
    known = Observed(**{**SEEN.__dict__, "training_rows": 400})
    decision = decide(p, observed=known)
    evidence = json.loads(decision.run["metadata"]["annotations"][EVIDENCE_ANNOTATION])
    assert evidence["newData"]["key"] == "newData:run-9" and evidence["newData"]["rows"] == 1000
    assert decision.status["dataRows"] == 1000
    assert decide(p, observed=Observed(**{**SEEN.__dict__, "training_rows": 600})).run is None
    # unknown training rows: the first observation is the baseline, then the recorded rows count
    first = decide(p)
    assert first.run is None and first.status["dataRows"] == 1000
    more = Observed(**{**SEEN.__dict__, "pipeline_run_id": "run-10", "pipeline_rows": 1600})
    assert decide(p, first.status, observed=more).run["metadata"]["name"] == "fraud-retrain-1"


def test_schedule_fires_once_per_slot_and_not_for_slots_before_it_was_seen():
    p = policy(schedule={"cron": "0 * * * *"})
    first = decide(p, now=NOW + timedelta(minutes=30))
    assert first.run is None and first.status["scheduleSince"] == "2026-11-22T12:30:00Z"
    assert decide(p, first.status, now=NOW + timedelta(minutes=59)).run is None
    fired = decide(p, first.status, now=NOW + timedelta(minutes=61))
    assert fired.status["decided"] == ["schedule:2026-11-22T13:00:00Z"]
    assert decide(p, fired.status, now=NOW + timedelta(minutes=62)).status is None
    assert next_wake(p, NOW + timedelta(minutes=30)) == 30 * 60
    assert next_wake(policy(drift={}), NOW) is None


def test_a_changed_schedule_is_seen_anew():
    seen = decide(policy(schedule={"cron": "0 * * * *"}), now=NOW).status
    changed = decide(policy(schedule={"cron": "30 * * * *"}), seen, now=NOW + timedelta(minutes=40))
    assert changed.run is None and changed.status["scheduleSince"] == "2026-11-22T12:40:00Z"


def test_on_demand_fires_once_per_id():
    p = policy(onDemand={"id": "20261122T120000Z-a1b2c3", "reason": "new labels"})
    decision = decide(p)
    evidence = json.loads(decision.run["metadata"]["annotations"][EVIDENCE_ANNOTATION])
    assert evidence["onDemand"] == {"key": "onDemand:20261122T120000Z-a1b2c3",
                                    "reason": "new labels", "id": "20261122T120000Z-a1b2c3"}
    assert decide(p, decision.status, [run("fraud-retrain-1", "Succeeded")],
                  now=NOW + timedelta(days=1)).run is None


def test_requirements_fire_when_the_hash_changes_after_the_first_observation():
    p = policy(requirements={})
    first = decide(p)
    assert first.run is None and first.status["requirementsHash"] == requirements_hash(
        p, SEEN.pipeline_spec)
    assert decide(p, first.status).status is None
    changed = Observed(**{**SEEN.__dict__, "pipeline_spec": {"version": "v2"}})
    decision = decide(p, first.status, observed=changed)
    assert decision.run is not None
    assert decision.status["requirementsHash"] == requirements_hash(p, {"version": "v2"})


def test_triggers_firing_together_make_one_run():
    p = policy(drift={}, onDemand={"id": "x1"})
    decision = decide(p, drift=drifted())
    annotations = decision.run["metadata"]["annotations"]
    assert annotations[TRIGGERS_ANNOTATION] == "drift,onDemand"
    assert set(json.loads(annotations[EVIDENCE_ANNOTATION])) == {"drift", "onDemand"}
    assert decision.status["triggers"] == ["drift", "onDemand"] and len(decision.events) == 1


def test_cooldown_is_shared_and_a_suppressed_firing_is_decided_once():
    first = decide(policy(drift={}, onDemand={"id": "x1"}), drift=drifted())
    finished = [run("fraud-retrain-1", "Succeeded")]
    p = policy(drift={}, onDemand={"id": "x2"})
    later = decide(p, first.status, finished, now=NOW + timedelta(hours=2), drift=drifted())
    assert later.run is None and later.status["decision"] == "Cooldown"
    assert [e.reason for e in later.events] == ["RetrainSuppressed"]
    assert "cooldown" in later.events[0].message and "2026-11-22T18:00:00Z" in later.status[
        "message"]
    assert later.status["lastRun"] == "fraud-retrain-1" and "onDemand:x2" in later.status[
        "decided"]
    again = decide(p, later.status, finished, now=NOW + timedelta(hours=7), drift=drifted())
    assert again.run is None and again.events == []


def test_max_concurrent_counts_every_active_retraining_run():
    p = policy(onDemand={"id": "x1"}, cooldown="1m")
    decision = decide(p, runs=[run("fraud-retrain-4", None)])
    assert decision.run is None and decision.status["decision"] == "MaxConcurrent"
    assert "fraud-retrain-4" in decision.status["message"]
    two = policy(onDemand={"id": "x1"}, max_concurrent=2)
    assert decide(two, runs=[run("fraud-retrain-4")]).run["metadata"]["name"] == "fraud-retrain-5"


def test_the_daily_budget_counts_runs_of_any_trigger_in_the_last_24h():
    record = {"count": 2, "runTimes": ["2026-11-21T11:00:00Z", "2026-11-22T01:00:00Z",
                                       "2026-11-22T02:00:00Z"],
              "lastTriggerTime": "2026-11-22T02:00:00Z", "lastRun": "fraud-retrain-2"}
    p = policy(cooldown="1m", daily_budget=2, onDemand={"id": "x1"})
    decision = decide(p, record)
    assert decision.run is None and decision.status["decision"] == "DailyBudget"
    assert decision.status["runTimes"] == record["runTimes"][1:]  # older than 24h: forgotten
    assert "2026-11-23T01:00:00Z" in decision.status["message"]
    assert decide(policy(cooldown="1m", daily_budget=3, onDemand={"id": "x1"}),
                  record).run is not None


def test_a_created_but_unrecorded_run_is_adopted_after_a_restart():
    created = run("fraud-retrain-1", keys=[f"drift:{REPORT}"])
    decision = decide(policy(drift={}), runs=[created], drift=drifted())
    assert decision.run is None and decision.events == []
    assert decision.status["decision"] == "Triggered" and decision.status["count"] == 1
    assert decision.status["lastRun"] == "fraud-retrain-1"
    assert decision.status["lastTriggerTime"] == "2026-11-22T11:00:00Z"
    assert decision.status["runTimes"] == ["2026-11-22T11:00:00Z"]


def test_an_invalid_template_is_reported_and_decided():
    decision = decide(policy(template={"command": ["train"]}, onDemand={"id": "x1"}))
    assert decision.run is None and decision.status["decision"] == "InvalidTemplate"
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "RetrainTemplateInvalid")]
    assert "spec.retrainPolicy.template" in decision.status["message"]
    assert decision.status["decided"] == ["onDemand:x1"]


def test_decided_keys_are_bounded_but_each_triggers_last_key_is_kept():
    record = {"decided": [f"schedule:{i}" for i in range(50)], "lastKeys": {"drift": "drift:old"},
              "lastTriggerTime": "2026-11-22T11:59:00Z"}
    decision = decide(policy(drift={}), record, drift=drifted())
    assert len(decision.status["decided"]) == 50 and decision.status["decided"][-1] == \
        f"drift:{REPORT}"
    assert decision.status["lastKeys"] == {"drift": f"drift:{REPORT}"}
    forgotten = {**decision.status, "decided": [f"schedule:{i}" for i in range(50)]}
    assert decide(policy(drift={}), forgotten, drift=drifted()).events == []


def test_a_new_monitor_report_awaits_the_policy():
    assert awaits_decision({"drift": drifted()})
    assert not awaits_decision({"drift": drifted(), "retrainPolicy": {"driftReport": REPORT}})
    assert awaits_decision({"quality": quality("q1", 0.5)})
    assert not awaits_decision({"quality": quality("q1", 0.5),
                                "retrainPolicy": {"qualityWindow": "q1"}})


def test_observations_from_the_served_model_version_and_its_pipeline():
    served = {"status": {"lineage": {"dataUri": SNAPSHOT, "metrics": {"accuracy": 0.9}}}}
    pipeline = {"metadata": {"name": "tx"}, "spec": {"version": "v1"},
                "status": {"latestOutputUri": SNAPSHOT,
                           "lastSuccessfulRun": {"runId": "run-3", "rows": 700,
                                                 "outputUri": SNAPSHOT}}}
    seen = observe(served, {"modelVersion": "fraud-7", "mlflowVersion": "7"}, pipeline)
    assert seen.served_versions == ("7", "fraud-7") and seen.training_rows == 700
    assert seen.pipeline_run_id == "run-3" and seen.feature_pipeline == "tx"
    newer = {**pipeline, "status": {"latestOutputUri": "s3://new/", "lastSuccessfulRun": {
        "runId": "run-4", "rows": 900, "outputUri": "s3://new/"}}}
    assert observe(served, None, newer).training_rows is None


def test_the_registry_version_carries_the_runs_triggers():
    created = decide(policy(onDemand={"id": "x1"})).run
    tags = retrain_tags(created)
    assert tags[TRIGGERS_ANNOTATION] == "onDemand" and "onDemand:x1" in tags[EVIDENCE_ANNOTATION]
    assert retrain_tags({"metadata": {}}) == {}


BASE = {"model": {"modelVersion": "fraud-7"}}
DRIFT = {"drift": {}}
POLICY = {"template": TEMPLATE, "triggers": {"drift": {}}}


@pytest.mark.parametrize("raw, message", [
    ({**BASE, "monitoring": {"drift": {"onDrift": {"retrain": {"template": TEMPLATE}}}},
      "retrainPolicy": POLICY}, "spec.retrainPolicy or spec.monitoring.drift.onDrift.retrain"),
    ({**BASE, "retrainPolicy": POLICY}, "need spec.monitoring.drift"),
    ({**BASE, "monitoring": DRIFT, "retrainPolicy": {**POLICY, "triggers": {
        "performance": {"metric": "accuracy", "min": 0.8}}}}, "needs spec.monitoring.quality"),
    ({**BASE, "retrainPolicy": {**POLICY, "triggers": {}}}, "at least one trigger"),
    ({**BASE, "retrainPolicy": {**POLICY, "triggers": {"performance": {
        "metric": "accuracy", "min": 0.8, "max": 0.9}}}, "monitoring": {"quality": {}}},
     "exactly one of min, max, dropFromTraining"),
    ({**BASE, "retrainPolicy": {**POLICY, "triggers": {"performance": {
        "metric": "accuracy", "min": 0.8, "windows": {"breaching": 3, "of": 2}}}},
      "monitoring": {"quality": {}}}, "windows.breaching must not exceed windows.of"),
    ({**BASE, "retrainPolicy": {**POLICY, "triggers": {"schedule": {"cron": "0 25 * * *"}}}},
     "outside 0-23"),
    ({**BASE, "retrainPolicy": {**POLICY, "triggers": {"schedule": {
        "cron": "0 3 * * *", "timeZone": "Nowhere/City"}}}}, "unknown time zone"),
    ({**BASE, "retrainPolicy": {**POLICY, "dailyBudget": 0}}, "greater than or equal to 1"),
])
def test_policy_rules(raw, message):
    with pytest.raises(ValidationError, match=message):
        InferenceServiceSpec.model_validate(raw)


def test_a_valid_policy_and_its_defaults():
    spec = InferenceServiceSpec.model_validate({**BASE, "monitoring": DRIFT, "retrainPolicy": {
        **POLICY, "triggers": {"drift": {}, "schedule": {"cron": "0 3 * * 1-5"},
                               "performance": {"metric": "accuracy", "dropFromTraining": 0.02}}},
        **{"monitoring": {**DRIFT, "quality": {}}}})
    p = spec.retrain_policy
    assert (p.cooldown, p.max_concurrent, p.daily_budget) == ("24h", 1, 3)
    assert p.triggers.schedule.time_zone == "UTC"
    assert (p.triggers.performance.windows.breaching, p.triggers.performance.windows.of) == (1, 1)
    assert p.triggers.performance.use_estimate is True
