from ferry.status import (
    ANNOUNCED, CHANGES, FAILURES, PLACEMENT, SPEC, find_condition, make_condition, set_condition,
    transitioned, transitions)


def cond(status, reason="R", now="2026-01-01T00:00:00Z", type_="Ready"):
    return make_condition(type_, status, reason, "m", generation=3, now=now)


def test_make_condition_follows_api_conventions():
    c = cond(True)
    assert c == {"type": "Ready", "status": "True", "reason": "R", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3}
    assert make_condition("X", "Unknown", "Wait")["status"] == "Unknown"


def test_same_status_keeps_transition_time():
    first = set_condition([], cond(True, now="2026-01-01T00:00:00Z"))
    second = set_condition(first, cond(True, reason="Other", now="2026-02-02T00:00:00Z"))
    assert second[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert second[0]["reason"] == "Other"


def test_status_change_moves_transition_time():
    first = set_condition([], cond(True, now="2026-01-01T00:00:00Z"))
    second = set_condition(first, cond(False, now="2026-02-02T00:00:00Z"))
    assert second[0]["lastTransitionTime"] == "2026-02-02T00:00:00Z"


def test_set_condition_keeps_others_sorted_and_does_not_mutate():
    original = [cond(True, type_="Zeta"), cond(True, type_="Alpha")]
    updated = set_condition(original, cond(False, type_="Ready"))
    assert [c["type"] for c in updated] == ["Alpha", "Ready", "Zeta"]
    assert len(original) == 2


def test_transitioned_reports_new_status_or_reason_only():
    before = [cond(True)]
    assert transitioned(before, [cond(True, now="later")], "Ready") is None
    assert transitioned(before, [cond(False)], "Ready")["status"] == "False"
    assert transitioned(before, [cond(True, reason="New")], "Ready")["reason"] == "New"
    assert transitioned(None, before, "Ready") is not None
    assert transitioned(before, [], "Ready") is None


def test_find_condition():
    assert find_condition(None, "Ready") is None
    assert find_condition([cond(True)], "Ready")["status"] == "True"


def told(events):
    return [(e.type, e.reason) for e in events]


def step(conditions, type_, status, reason):
    return set_condition(conditions, make_condition(type_, status, reason, f"{type_} {reason}"))


def test_a_condition_going_false_warns_and_the_same_status_again_posts_nothing():
    policy = {"Ready": CHANGES}
    up = step([], "Ready", True, "Serving")
    down = step(up, "Ready", False, "NotServing")
    assert told(transitions(up, down, policy)) == [("Warning", "NotServing")]
    again = step(down, "Ready", False, "NotServing")
    assert transitions(down, again, policy) == []
    assert told(transitions(down, step(again, "Ready", True, "Serving"), policy)) == [
        ("Normal", "Serving")]


def test_an_outage_warns_once_while_it_lasts_and_recovers_silently():
    """The False condition in status is the memory of the outage: a restarted operator reads it
    back and does not warn again."""
    policy = ANNOUNCED["FeaturePipeline"]
    reachable = step([], "OutputsReadable", True, "Readable")
    first = step(reachable, "OutputsReadable", False, "ObjectStoreUnavailable")
    assert told(transitions(reachable, first, policy)) == [("Warning", "ObjectStoreUnavailable")]
    assert told(transitions([], first, policy)) == [("Warning", "ObjectStoreUnavailable")]
    retried = set_condition(first, make_condition("OutputsReadable", False,
                                                  "ObjectStoreUnavailable", "timed out again"))
    assert transitions(first, retried, policy) == []
    assert transitions(retried, step(retried, "OutputsReadable", True, "Readable"), policy) == []


def test_a_recovery_that_is_news_posts_once():
    down = step([], "Validated", False, "ExpectationsFailed")
    up = step(down, "Validated", True, "ExpectationsPassed")
    policy = ANNOUNCED["FeaturePipeline"]
    assert told(transitions(down, up, policy)) == [("Normal", "ExpectationsPassed")]
    assert transitions(up, step(up, "Validated", True, "ExpectationsPassed"), policy) == []


def test_failures_only_conditions_never_tell_true_or_unknown():
    assert transitions([], step([], "Ready", True, "Serving"), {"Ready": FAILURES}) == []
    assert transitions([], step([], "Ready", "Unknown", "Wait"), {"Ready": FAILURES}) == []


def test_only_declared_failure_reasons_are_news():
    policy = ANNOUNCED["ModelVersion"]
    waiting = step([], "Registered", False, "WaitingForTrainingRun")
    assert transitions([], waiting, policy) == []
    failed = step(waiting, "Registered", False, "RegistrationFailed")
    assert told(transitions(waiting, failed, policy)) == [("Warning", "RegistrationFailed")]
    assert transitions(failed, step(failed, "Registered", True, "Registered"), policy) == []


def test_placed_at_the_first_try_is_not_news_but_after_a_problem_it_is():
    policy = {"Scheduled": PLACEMENT}
    waiting = step([], "Scheduled", "Unknown", "WaitingForWorkers")
    assert transitions([], waiting, policy) == []
    assert transitions(waiting, step(waiting, "Scheduled", True, "Scheduled"), policy) == []
    stuck = step(waiting, "Scheduled", "Unknown", "Unschedulable")
    assert told(transitions(waiting, stuck, policy)) == [("Warning", "Unschedulable")]
    failed = step(stuck, "Scheduled", False, "Unschedulable")
    assert told(transitions(failed, step(failed, "Scheduled", True, "Scheduled"), policy)) == [
        ("Normal", "Scheduled")]


def test_a_waiting_reason_is_told_once_across_conditions_in_policy_order():
    policy = ANNOUNCED["TrainingRun"]
    after = step(step([], "Succeeded", "Unknown", "InsufficientGPU"), "Scheduled", "Unknown",
                 "InsufficientGPU")
    assert [(e.reason, e.message) for e in transitions([], after, policy)] == [
        ("InsufficientGPU", "Scheduled InsufficientGPU")]


def test_only_the_policys_conditions_are_told_and_messages_fit_an_event():
    before = step([], "Accepted", True, "SpecValid")
    after = set_condition(step(before, "Accepted", False, "InvalidSpec"),
                          make_condition("Ready", False, "NotServing", "x" * 5000))
    assert told(transitions(before, after, SPEC)) == [("Warning", "InvalidSpec")]
    [ready] = transitions(before, after, ANNOUNCED["InferenceService"])
    assert ready.reason == "NotServing" and len(ready.message) == 1024
