"""A distributed TrainingRun is scheduled only when all its workers are placed at the same time;
workers that ran one after another fail the run with the scheduling reason (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta, UTC

from ferry.api import parse_spec
from ferry.reconcilers.trainingrun import Observed, decide, placed_together, ran_one_after_another
from ferry.status import find_condition

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(**extra):
    return parse_spec("TrainingRun", {"image": "trainer:1", "command": ["train"], **extra})


def worker(index: int, bound: float | None, finished: float | None = None) -> dict:
    """A worker pod of an Indexed Job: bound at ``bound`` seconds (None: Unschedulable) and
    finished at ``finished`` (None: still running)."""
    metadata = {"name": f"ddp-{index}-x",
                "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}}
    if bound is None:
        return {"metadata": metadata, "spec": {}, "status": {"phase": "Pending", "conditions": [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
             "message": "0/5 nodes are available: 5 Insufficient nvidia.com/gpu."}]}}
    status = {"phase": "Running", "startTime": at(bound), "conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": at(bound)}]}
    if finished is not None:
        status |= {"phase": "Succeeded", "containerStatuses": [{"name": "trainer", "state": {
            "terminated": {"exitCode": 0, "startedAt": at(bound), "finishedAt": at(finished)}}}]}
    return {"metadata": metadata, "spec": {"nodeName": f"kwok-gpu-{index % 2}"}, "status": status}


def gang_job(complete: bool = False) -> dict:
    conditions = [{"type": "Complete", "status": "True"}] if complete else []
    return {"metadata": {"name": "ddp", "creationTimestamp": at(0)},
            "status": {"conditions": conditions, "active": 0 if complete else 1}}


def test_placed_together_counts_overlaps_not_totals_with_whole_second_times():
    assert placed_together([worker(0, 1), worker(1, 1), worker(2, None)]) == 2
    # Two ran 1..26 s; the third was bound in the very second they ended, then after them.
    serial = [worker(0, 1, 26), worker(1, 1, 26), worker(2, 26, 51)]
    assert placed_together(serial) == 2
    assert placed_together([worker(0, 1, 26), worker(1, 1, 26), worker(2, 27, 52)]) == 2
    assert placed_together([worker(0, 1, 26), worker(1, 2, 27), worker(2, 3)]) == 3
    assert not ran_one_after_another(serial), "the same second proves nothing"
    assert ran_one_after_another([worker(0, 1, 26), worker(1, 1, 26), worker(2, 27)])
    assert not ran_one_after_another([worker(0, 1, 26), worker(1, 2, 27)])


def test_three_by_eight_gpus_on_two_nodes_of_eight_fails_at_the_timeout_never_succeeds():
    run = spec(workers=3, resources={"gpus": 8}, schedulingTimeout="60s")
    step = lambda status, pods, now, job=None: decide(run, status, 1, Observed(  # noqa: E731
        job=job or gang_job(), pods=pods, now=T0 + timedelta(seconds=now)))

    # Two workers run, the third cannot be placed.
    first, events, _ = step({}, [worker(0, 1), worker(1, 1), worker(2, None)], 5)
    scheduled = find_condition(first["conditions"], "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "InsufficientGPU")
    assert first["phase"] == "Pending" and ("Warning", "InsufficientGPU") in \
        [(e.type, e.reason) for e in events]

    # They finish; the third gets their GPUs and runs alone: still not scheduled together.
    serial = [worker(0, 1, 26), worker(1, 1, 26), worker(2, 26)]
    second, events, requeue = step(first, serial, 30)
    scheduled = find_condition(second["conditions"], "Scheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "InsufficientGPU")
    assert "At most 2 of 3 workers" in scheduled["message"]
    assert second["phase"] == "Pending" and requeue is not None and events == []

    # At schedulingTimeout: Failed with the scheduling reason.
    failed, events, _ = step(second, serial, 61)
    succeeded = find_condition(failed["conditions"], "Succeeded")
    assert failed["phase"] == "Failed" and succeeded["reason"] == "InsufficientGPU"
    assert "not all workers scheduled within 60s" in failed["message"]
    assert ("Warning", "InsufficientGPU") in [(e.type, e.reason) for e in events]

    # A Job that completes before the timeout does not make it a success either.
    done, _, _ = step(second, [worker(0, 1, 26), worker(1, 1, 26), worker(2, 26, 51)], 52,
                      gang_job(complete=True))
    assert done["phase"] == "Failed"
    assert find_condition(done["conditions"], "Succeeded")["reason"] == "InsufficientGPU"
    assert find_condition(done["conditions"], "Scheduled")["status"] == "False"


def test_workers_placed_at_the_same_time_are_scheduled_and_succeed():
    run = spec(workers=2, resources={"gpus": 8}, schedulingTimeout="60s")
    pending, _, _ = decide(run, {}, 1, Observed(job=gang_job(), pods=[], now=T0))
    waiting = find_condition(pending["conditions"], "Scheduled")
    assert (waiting["status"], waiting["reason"]) == ("Unknown", "WaitingForWorkers")
    half, _, _ = decide(run, pending, 1, Observed(job=gang_job(), pods=[worker(0, 1)], now=T0))
    assert find_condition(half["conditions"], "Scheduled")["status"] == "Unknown"
    both, events, _ = decide(run, half, 1, Observed(job=gang_job(), pods=[
        worker(0, 1), worker(1, 2)], now=T0 + timedelta(seconds=3)))
    scheduled = find_condition(both["conditions"], "Scheduled")
    assert scheduled["status"] == "True" and "All 2 workers" in scheduled["message"]
    assert events == [], "placed at the first try is not news"
    # One finished a second before the other: they were together, the run succeeds.
    done, _, _ = decide(run, both, 1, Observed(job=gang_job(complete=True), pods=[
        worker(0, 1, 26), worker(1, 2, 27)], now=T0 + timedelta(seconds=90)))
    assert done["phase"] == "Succeeded"
    assert find_condition(done["conditions"], "Scheduled")["status"] == "True"


def test_a_gang_that_waited_for_room_and_then_ran_together_is_scheduled():
    run = spec(workers=2, resources={"gpus": 8})
    blocked, _, _ = decide(run, {}, 1, Observed(job=gang_job(), pods=[
        worker(0, 1), worker(1, None)], now=T0))
    assert find_condition(blocked["conditions"], "Scheduled")["status"] == "False"
    # Worker 0 kept its node until the other got room: now they run together.
    together, events, _ = decide(run, blocked, 1, Observed(job=gang_job(), pods=[
        worker(0, 1), worker(1, 20)], now=T0 + timedelta(seconds=21)))
    assert find_condition(together["conditions"], "Scheduled")["status"] == "True"
    assert [(e.type, e.reason) for e in events] == [("Normal", "Scheduled")]


def test_serial_workers_fail_even_when_the_operator_missed_the_pending_one():
    run = spec(workers=2, resources={"gpus": 8})
    done, _, _ = decide(run, {}, 1, Observed(job=gang_job(complete=True), pods=[
        worker(0, 1, 10), worker(1, 11, 20)], now=T0 + timedelta(seconds=30)))
    assert done["phase"] == "Failed"
    assert find_condition(done["conditions"], "Succeeded")["reason"] == "InsufficientGPU"


def test_a_completed_job_without_signs_of_trouble_is_trusted():
    """Sub-second workers leave no overlap at whole-second resolution; with no sign of waiting
    for room the Job's completion stands (and without pods there is nothing to judge)."""
    run = spec(workers=2)
    for pods in ([worker(0, 1, 1), worker(1, 1, 1)], []):
        done, _, _ = decide(run, {}, 1, Observed(job=gang_job(complete=True), pods=pods,
                                                 now=T0 + timedelta(seconds=5)))
        assert done["phase"] == "Succeeded"
        assert find_condition(done["conditions"], "Scheduled")["status"] == "True"


def test_a_new_attempt_does_not_inherit_the_last_attempts_scheduling():
    run = spec(workers=2, resources={"gpus": 8})
    status = {"restarts": 0, "conditions": [
        {"type": "Scheduled", "status": "True", "reason": "Scheduled", "message": "",
         "lastTransitionTime": at(0)}]}
    fresh, _, _ = decide(run, status, 1, Observed(job=gang_job(), pods=[], now=T0, attempt=1))
    assert find_condition(fresh["conditions"], "Scheduled")["status"] == "Unknown"
