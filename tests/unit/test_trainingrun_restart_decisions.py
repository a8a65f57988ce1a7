"""Whole-job restart of distributed runs, trials and ModelVersions of a run (pure)."""

from ferry.api import parse_spec
from ferry.builders.trainingrun import (
    ATTEMPT_LABEL, PARENT_RUN_ANNOTATION, RESTART_CAUSE, SWEEP_LABEL, TRIAL_LABEL, Tracking,
    build_children, build_job, build_model_version, build_trial, job_name, model_version_name)
from ferry.reconcilers.trainingrun import (
    Observed, Restart, attempt_of, current_job, decide, plan_restart, restart_cause)
from ferry.status import find_condition

OWNER = {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
         "metadata": {"name": "fraud", "namespace": "ml", "uid": "uid-7"},
         "spec": {"image": "trainer:1", "parameters": {"lr": "0.1", "epochs": "3"},
                  "sweep": {"maxTrials": 2}, "register": {"modelName": "fraud"}}}
TRACKING = Tracking(tracking_uri="http://mlflow", experiment="fraud", run_id="r123")


def spec(**extra):
    return parse_spec("TrainingRun", {"image": "trainer:1", "command": ["python", "train.py"],
                                      **extra})


def env(job):
    return {e["name"]: e.get("value", e.get("valueFrom"))
            for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def attempt_job(attempt, conditions=(), cause=None, **status):
    annotations = {RESTART_CAUSE: cause} if cause else {}
    return {"metadata": {"name": job_name("fraud", attempt), "annotations": annotations,
                         "labels": {ATTEMPT_LABEL: str(attempt)},
                         "creationTimestamp": "2026-11-22T12:00:00Z"},
            "status": {"conditions": list(conditions), **status}}


FAILED = [{"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
           "message": "Job has reached the specified backoff limit"},
          {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
           "message": "Job has reached the specified backoff limit"}]


def pod(exit_code=None, disrupted=False):
    status = {"phase": "Failed", "conditions": []}
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "trainer", "state": {
            "terminated": {"exitCode": exit_code, "reason": "Error"}}}]
    if disrupted:
        status["conditions"].append({"type": "DisruptionTarget", "status": "True"})
    return {"status": status}


def test_attempt_names_env_and_selectors_follow_the_attempt():
    assert job_name("fraud") == "fraud" and job_name("fraud", 2) == "fraud-a2"
    assert len(job_name("x" * 80, 100)) <= 63
    children = build_children(OWNER, spec(workers=2), TRACKING, attempt=2, cause="Failure")
    service, job = children
    assert job["metadata"]["name"] == "fraud-a2"
    assert job["metadata"]["labels"][ATTEMPT_LABEL] == "2"
    assert job["metadata"]["annotations"] == {RESTART_CAUSE: "Failure"}
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "fraud-a2"}
    values = env(job)
    assert values["FERRY_ATTEMPT"] == "2"
    assert values["MASTER_ADDR"].startswith("fraud-a2-0.")
    assert env(build_job(OWNER, spec(), TRACKING))["FERRY_ATTEMPT"] == "0"


def test_a_distributed_attempt_fails_as_a_whole_on_any_failure_or_disruption():
    job = build_job(OWNER, spec(workers=4, backoffLimit=5, nonRetryableExitCodes=[3]), TRACKING)
    assert job["spec"]["backoffLimit"] == 0
    rules = job["spec"]["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]}
    assert rules[1]["onExitCodes"]["values"] == [3]
    single = build_job(OWNER, spec(backoffLimit=5), TRACKING)
    assert single["spec"]["backoffLimit"] == 5
    assert single["spec"]["podFailurePolicy"]["rules"][0]["action"] == "Ignore"


def test_current_job_is_the_highest_attempt():
    jobs = [attempt_job(1), attempt_job(0), attempt_job(2)]
    assert attempt_of(current_job(jobs)) == 2
    assert current_job([]) is None and attempt_of(None) == 0


def test_a_failed_worker_restarts_all_workers_once_the_old_ones_are_gone():
    run = spec(workers=2, maxRestarts=2)
    terminating = attempt_job(0, FAILED[:1])
    restart = plan_restart(run, [terminating], [pod(1)])
    assert restart.attempt == 1 and restart.cause == "Failure" and not restart.ready
    restart = plan_restart(run, [attempt_job(0, FAILED)], [pod(1), pod(143)])
    assert restart.ready and "restarting all 2 workers as attempt 1" in restart.message
    assert "exit codes [1, 143]" in restart.message


def test_failure_restarts_stop_at_max_restarts_but_disruptions_do_not_count():
    run = spec(workers=2, maxRestarts=1)
    history = [attempt_job(0, FAILED), attempt_job(1, FAILED, cause="Failure")]
    assert plan_restart(run, history, [pod(1)]) is None
    disrupted = plan_restart(run, history, [pod(disrupted=True)])
    assert disrupted.cause == "Disruption" and disrupted.attempt == 2
    history = [attempt_job(0, FAILED), attempt_job(1, FAILED, cause="Disruption")]
    assert plan_restart(run, history, [pod(1)]).attempt == 2


def test_no_restart_for_single_workers_non_retryable_codes_deadlines_or_success():
    assert plan_restart(spec(), [attempt_job(0, FAILED)], [pod(1)]) is None
    run = spec(workers=2, nonRetryableExitCodes=[3])
    assert plan_restart(run, [attempt_job(0, FAILED)], [pod(3)]) is None
    deadline = [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    assert plan_restart(run, [attempt_job(0, deadline)], []) is None
    done = [{"type": "Complete", "status": "True"}]
    assert plan_restart(run, [attempt_job(0, done)], []) is None
    assert plan_restart(run, [], []) is None


def test_a_disruption_is_recognised_from_the_failure_policy_message():
    policy = [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy",
               "message": "Pod ml/fraud-1 has condition DisruptionTarget matching FailJob rule "
                          "at index 0"}]
    assert restart_cause(spec(workers=2), attempt_job(0, policy), []) == "Disruption"


def test_decide_reports_restarting_then_counts_restarts_and_attempts():
    run = spec(workers=2)
    waiting = Restart(1, "Failure", False, "Attempt 0: a worker failed; restarting")
    fields, events, requeue = decide(run, {}, 1, Observed(
        job=attempt_job(0, FAILED[:1]), restart=waiting))
    assert fields["phase"] == "Running" and requeue == 1.0
    assert find_condition(fields["conditions"], "Succeeded")["reason"] == "Restarting"
    assert not [e for e in events if e.reason == "BackoffLimitExceeded"]
    fields, _, _ = decide(run, {}, 1, Observed(
        job=attempt_job(1, [{"type": "Complete", "status": "True"}], succeeded=2), attempt=1))
    assert fields["phase"] == "Succeeded" and fields["restarts"] == 1 and fields["attempts"] == 2
    fields, _, _ = decide(run, {}, 1, Observed(job=attempt_job(3, FAILED), attempt=3))
    assert fields["phase"] == "Failed" and "after 3 restart(s)" in fields["message"]


def test_a_trial_is_the_parent_spec_without_the_sweep_with_its_parameters_merged():
    trial = build_trial(OWNER, 3, {"lr": "0.01"}, "parent-run")
    assert trial["kind"] == "TrainingRun" and trial["metadata"]["name"] == "fraud-t3"
    assert "sweep" not in trial["spec"]
    assert trial["spec"]["parameters"] == {"lr": "0.01", "epochs": "3"}
    assert trial["spec"]["register"] == {"modelName": "fraud"}
    labels = trial["metadata"]["labels"]
    assert labels[SWEEP_LABEL] == "fraud" and labels[TRIAL_LABEL] == "3"
    assert trial["metadata"]["annotations"] == {PARENT_RUN_ANNOTATION: "parent-run"}
    assert trial["metadata"]["ownerReferences"][0]["uid"] == "uid-7"
    assert "annotations" not in build_trial(OWNER, 0, {}, None)["metadata"]
    assert OWNER["spec"]["parameters"] == {"lr": "0.1", "epochs": "3"}  # not mutated


def test_model_version_names_are_predictable_and_valid():
    assert model_version_name("fraud", "train-7") == "fraud-train-7"
    assert model_version_name("Fraud Detector_v2", "r1") == "fraud-detector-v2-r1"
    assert model_version_name("--x--", "r1") == "x-r1"
    assert len(model_version_name("m" * 300, "r1")) <= 253


def test_the_model_version_of_a_run_copies_features_gates_and_approval_and_has_no_owner():
    run = spec(features="transactions-v2", register={
        "modelName": "fraud", "description": "nightly", "tags": {"team": "risk"},
        "gates": {"metrics": [{"metric": "auc", "op": ">=", "value": 0.8}]},
        "approval": {"required": True}})
    mv = build_model_version(OWNER, run, "fraud-t2")
    assert mv["kind"] == "ModelVersion" and mv["metadata"]["name"] == "fraud-fraud"
    assert "ownerReferences" not in mv["metadata"]
    assert mv["metadata"]["labels"]["ferry.dev/trainingrun"] == "fraud"
    assert mv["spec"]["trainingRunRef"] == "fraud-t2"
    assert mv["spec"]["features"] == "transactions-v2"
    assert mv["spec"]["gates"]["metrics"] == [{"metric": "auc", "op": ">=", "value": 0.8}]
    assert mv["spec"]["approval"] == {"required": True}
    assert mv["spec"]["description"] == "nightly" and mv["spec"]["tags"] == {"team": "risk"}
    parse_spec("ModelVersion", mv["spec"])  # a valid ModelVersion spec
