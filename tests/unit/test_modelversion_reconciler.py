from ferry.api import parse_spec
from ferry.reconcilers.modelversion import Observed, decide, evaluate_gates
from ferry.status import find_condition


def spec(**extra):
    return parse_spec("ModelVersion", {"modelName": "fraud", "source": "runs:/r1/model", **extra})


def gates(**gate_spec):
    return spec(gates=gate_spec)


def by_name(results):
    return {g["name"]: g for g in results}


def test_metric_thresholds_pass_fail_and_missing():
    results = by_name(evaluate_gates(gates(metrics=[
        {"metric": "auc", "op": ">=", "value": 0.85}, {"metric": "loss", "op": "<", "value": 0.1},
        {"metric": "f1", "op": ">", "value": 0.5}]), Observed(metrics={"auc": 0.9, "loss": 0.2})))
    assert results["metric auc"] == {"name": "metric auc", "verdict": "Passed", "observed": "0.9",
                                     "threshold": ">= 0.85"}
    assert results["metric loss"]["verdict"] == "Failed"
    assert results["metric f1"]["verdict"] == "Failed" and "not logged" in results["metric f1"]["message"]


def test_beat_champion_with_and_without_a_champion():
    rule = gates(beatChampion={"metric": "auc", "minDelta": 0.01})
    alone = evaluate_gates(rule, Observed(version="1", metrics={"auc": 0.8}))[0]
    assert alone["verdict"] == "Passed" and alone["message"] == "no champion to beat"
    itself = evaluate_gates(rule, Observed(version="1", champion="1", metrics={"auc": 0.8}))[0]
    assert itself["verdict"] == "Passed"
    beaten = evaluate_gates(rule, Observed(version="2", champion="1", metrics={"auc": 0.92},
                                           champion_metrics={"auc": 0.9}))[0]
    assert beaten["verdict"] == "Passed" and beaten["threshold"].startswith(">= 0.91")
    short = evaluate_gates(rule, Observed(version="2", champion="1", metrics={"auc": 0.905},
                                          champion_metrics={"auc": 0.9}))[0]
    assert short["verdict"] == "Failed"
    minimize = gates(beatChampion={"metric": "loss", "goal": "minimize", "minDelta": 0.05})
    better = evaluate_gates(minimize, Observed(version="2", champion="1", metrics={"loss": 0.1},
                                               champion_metrics={"loss": 0.2}))[0]
    assert better["verdict"] == "Passed" and better["threshold"].startswith("<= 0.15")


def test_beat_champion_a_champion_without_the_metric_is_not_compared():
    """A champion left without the metric (no MLflow run, or a run that never logged it) must not
    block candidates: the gate passes and says so, in the gate and in GatesPassed."""
    rule = gates(beatChampion={"metric": "auc", "minDelta": 0.005})
    seen = Observed(version="7", champion="3", metrics={"auc": 0.9668},
                    champion_metrics={"loss": 0.2})
    result = evaluate_gates(rule, seen)[0]
    assert result == {"name": "beatChampion auc", "verdict": "Passed", "observed": "0.9668",
                      "message": "champion v3 has no metric 'auc'; not compared"}
    fields, _ = decide(rule, {}, 1, seen)
    assert fields["phase"] == "Approved"
    passed = cond(fields, "GatesPassed")
    assert passed["status"] == "True" and passed["reason"] == "AllGatesPassed"
    assert passed["message"] == ("1 gate(s) passed (beatChampion auc: champion v3 has no metric "
                                 "'auc'; not compared).")
    no_run = evaluate_gates(rule, Observed(version="7", champion="3", metrics={"auc": 0.9}))[0]
    assert no_run["verdict"] == "Passed" and "champion v3 has no metric 'auc'" in no_run["message"]


def test_beat_champion_a_candidate_without_the_metric_fails_and_says_so():
    rule = gates(beatChampion={"metric": "auc"})
    for champion, champion_metrics in (("3", {"auc": 0.9}), ("3", {}), (None, {})):
        result = evaluate_gates(rule, Observed(version="7", champion=champion,
                                               metrics={"loss": 0.1},
                                               champion_metrics=champion_metrics))[0]
        assert result["verdict"] == "Failed" and "observed" not in result
        assert result["message"] == "the candidate has no metric 'auc' (its run did not log it)"
    fields, events = decide(rule, {}, 1, Observed(version="7", champion="3",
                                                  champion_metrics={"auc": 0.9}))
    assert fields["phase"] == "Rejected"
    assert cond(fields, "GatesPassed")["message"] == (
        "beatChampion auc: - the candidate has no metric 'auc' (its run did not log it)")
    assert any(e.reason == "GateFailed" and "candidate has no metric" in e.message
               for e in events)


def test_features_ready_and_signature_against_the_feature_schema():
    rule = spec(features="tx-v2", gates={"signature": True})
    ready = by_name(evaluate_gates(rule, Observed(features_ready=True, input_columns=["a", "b"],
                                                  feature_columns=["a", "b", "c"])))
    assert ready["featuresReady"]["verdict"] == "Passed"
    assert ready["signature"]["verdict"] == "Passed"
    missing = by_name(evaluate_gates(rule, Observed(features_ready=False, input_columns=["a", "z"],
                                                    feature_columns=["a"])))
    assert missing["featuresReady"]["verdict"] == "Failed"
    assert missing["signature"]["verdict"] == "Failed" and "'z'" in missing["signature"]["message"]
    unsigned = by_name(evaluate_gates(rule, Observed(features_ready=True)))
    assert unsigned["signature"]["verdict"] == "Failed"
    pending = by_name(evaluate_gates(rule, Observed(input_columns=["a"])))
    assert pending["featuresReady"]["verdict"] == "Pending"


def cond(fields, type_):
    return find_condition(fields["conditions"], type_)


def test_phases_rejected_awaiting_approved_serving():
    failing = gates(metrics=[{"metric": "auc", "op": ">", "value": 0.95}])
    fields, events = decide(failing, {}, 1, Observed(version="1", metrics={"auc": 0.9}))
    assert fields["phase"] == "Rejected" and cond(fields, "Ready")["status"] == "False"
    assert any(e.reason == "GateFailed" and e.type == "Warning" for e in events)

    waiting = spec(approval={"required": True})
    fields, _ = decide(waiting, {}, 1, Observed(version="1"))
    assert fields["phase"] == "AwaitingApproval"
    assert cond(fields, "Approved")["reason"] == "AwaitingApproval"

    approved = spec(approval={"required": True, "approvedBy": "alice", "comment": "ok"})
    fields, events = decide(approved, {}, 1, Observed(version="1", now="2026-11-22T12:00:00Z"))
    assert fields["phase"] == "Approved"
    assert fields["approval"] == {"by": "alice", "at": "2026-11-22T12:00:00Z", "comment": "ok"}
    assert any(e.reason == "ApprovedByHuman" for e in events)
    again, _ = decide(approved, fields, 1, Observed(version="1", now="2026-11-23T00:00:00Z"))
    assert again["approval"]["at"] == "2026-11-22T12:00:00Z"  # the audit record is stable

    fields, _ = decide(spec(), {}, 1, Observed(version="1", served_by=["InferenceService/api"]))
    assert fields["phase"] == "Serving" and fields["servedBy"] == ["InferenceService/api"]


def test_steady_state_is_silent():
    first, _ = decide(spec(), {}, 1, Observed(version="1"))
    _, events = decide(spec(), first, 1, Observed(version="1"))
    assert events == []


def test_served_then_unserved_is_retired_and_can_serve_again():
    serving, events = decide(spec(), {}, 1, Observed(version="1", served_by=["InferenceService/api"]))
    assert serving["phase"] == "Serving" and any(e.reason == "Serving" for e in events)
    retired, events = decide(spec(), serving, 1, Observed(version="1"))
    assert retired["phase"] == "Retired" and retired["servedBy"] == []
    assert [e.reason for e in events] == ["Retired"]
    assert cond(retired, "Ready")["status"] == "True"  # still approved
    still, events = decide(spec(), retired, 1, Observed(version="1"))
    assert still["phase"] == "Retired" and events == []
    again, _ = decide(spec(), retired, 1, Observed(version="1", served_by=["InferenceService/api"]))
    assert again["phase"] == "Serving"
    never_served, _ = decide(spec(), {}, 1, Observed(version="1"))
    assert never_served["phase"] == "Approved"


def test_a_training_run_is_registered_from_only_once_it_has_succeeded():
    """Before it succeeds, a run has neither its model nor its final metrics in MLflow."""
    import asyncio
    from types import SimpleNamespace

    from ferry.controllers.modelversion import resolve_source

    def resolve(run, status=None):
        async def get(api_version, kind, namespace, name):
            assert (kind, name) == ("TrainingRun", "fraud-train")
            return run

        ctx = SimpleNamespace(kube=SimpleNamespace(get=get))
        mv = parse_spec("ModelVersion", {"modelName": "fraud", "trainingRunRef": "fraud-train"})
        return asyncio.run(resolve_source(ctx, mv, "demo", status or {}))

    def run(phase, run_id="r1"):
        return {"spec": {"image": "trainer:1"},
                "status": {"phase": phase, "featuresUri": "s3://b/f/",
                           **({"mlflowRunId": run_id} if run_id else {})}}

    assert resolve(None)["waiting"][0] == "WaitingForTrainingRun"
    assert resolve(run("Pending", None))["waiting"] == (
        "WaitingForTrainingRun", "TrainingRun fraud-train has no MLflow run yet.")
    running = resolve(run("Running"))["waiting"]
    assert running[0] == "WaitingForTrainingRun" and "is Running" in running[1]
    assert resolve(run("Failed"))["waiting"][0] == "TrainingRunFailed"
    assert resolve(run("Succeeded")) == {"source": "runs:/r1/model", "runId": "r1",
                                         "trainingRun": "fraud-train", "image": "trainer:1",
                                         "dataUri": "s3://b/f/"}
    # Registered already (e.g. by an older operator): keep following it.
    assert resolve(run("Running"), {"mlflowVersion": "3"})["source"] == "runs:/r1/model"


def test_a_retraining_runs_triggers_reach_the_lineage_and_its_evidence_the_registry_tags():
    from ferry.controllers.modelversion import retrain_tags, retrain_triggers
    from ferry.reconcilers.retrain_policy import EVIDENCE_ANNOTATION, TRIGGERS_ANNOTATION

    evidence = '{"onDemand": {"key": "onDemand:1", "reason": "new labels"}}'
    run = {"metadata": {"annotations": {TRIGGERS_ANNOTATION: "onDemand,schedule",
                                        EVIDENCE_ANNOTATION: evidence}}}
    assert retrain_triggers(run) == ["onDemand", "schedule"]
    assert retrain_tags(run) == {TRIGGERS_ANNOTATION: "onDemand,schedule",
                                 EVIDENCE_ANNOTATION: evidence}
    huge = {"metadata": {"annotations": {EVIDENCE_ANNOTATION: "x" * 6000}}}
    assert retrain_tags(huge) == {}, "longer than a registry tag: it stays on the run"
    assert retrain_triggers({"metadata": {}}) is None
