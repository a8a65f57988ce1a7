import pytest

from ferry.controllers._worker import MAX_BACKOFF, backoff
from ferry.observability.metrics import PhaseTracker, track_reconcile, RECONCILE_TOTAL
from ferry.reconcilers.outcome import Outcome


def test_backoff_doubles_from_one_second_and_is_capped():
    assert backoff(0, 60) == 60
    assert [backoff(n, 60) for n in range(1, 5)] == [1, 2, 4, 8]
    assert backoff(50, 60) == MAX_BACKOFF


def test_outcome_writes_only_changed_fields():
    outcome = Outcome(status={"phase": "Pending", "observedGeneration": 2})
    assert outcome.status_changes({"phase": "Pending", "observedGeneration": 1}) == {
        "observedGeneration": 2}
    assert outcome.status_changes({"phase": "Pending", "observedGeneration": 2}) == {}
    assert outcome.status_changes(None) == outcome.status


def test_phase_tracker_counts_and_forgets():
    tracker = PhaseTracker()
    tracker.set("a", "TrainingRun", "Pending")
    tracker.set("b", "TrainingRun", "Pending")
    tracker.set("a", "TrainingRun", "Running")
    assert tracker.counts() == {("TrainingRun", "Pending"): 1, ("TrainingRun", "Running"): 1}
    tracker.forget("b")
    samples = [s for family in tracker.collect() for s in family.samples]
    assert [(s.labels["phase"], s.value) for s in samples] == [("Running", 1)]


def test_track_reconcile_counts_success_and_error():
    ok = RECONCILE_TOTAL.labels("UnitKind", "success")
    failed = RECONCILE_TOTAL.labels("UnitKind", "error")
    before_ok, before_failed = ok._value.get(), failed._value.get()
    with track_reconcile("UnitKind"):
        pass
    with pytest.raises(ValueError), track_reconcile("UnitKind"):
        raise ValueError("boom")
    assert ok._value.get() == before_ok + 1
    assert failed._value.get() == before_failed + 1


def test_feature_freshness_reports_age_at_scrape_time_and_forgets():
    import time

    from ferry.observability.metrics import FeatureFreshness

    tracker = FeatureFreshness()
    tracker.set("u1", ("ns", "fp", "tx", "v1"), time.time() - 100)
    sample = next(iter(tracker.collect())).samples[0]
    assert sample.labels == {"namespace": "ns", "name": "fp", "feature_set": "tx", "version": "v1"}
    assert 99 <= sample.value < 110
    tracker.forget("u1")
    assert next(iter(tracker.collect())).samples == []


def test_a_stale_body_is_read_with_our_last_status_write_until_the_watch_catches_up():
    from ferry.controllers._worker import Written, current_status

    written = Written({"phase": "Running", "observedGeneration": 1}, resource_version=120)
    stale = {"metadata": {"resourceVersion": "110"}, "status": {"phase": "Pending", "x": 1}}
    assert current_status(stale, written) == {"phase": "Running", "observedGeneration": 1, "x": 1}
    caught_up = {"metadata": {"resourceVersion": "120"}, "status": {"phase": "Running"}}
    assert current_status(caught_up, written) == {"phase": "Running"}
    newer = {"metadata": {"resourceVersion": "130"}, "status": {"phase": "Failed"}}
    assert current_status(newer, written) == {"phase": "Failed"}  # someone else wrote since
    assert current_status(stale, None) == stale["status"]


# --- the work queue ------------------------------------------------------------------------------

def run(coroutine):
    import asyncio

    return asyncio.run(coroutine)


def test_a_key_is_queued_once_however_often_it_is_added():
    from ferry.controllers._worker import WorkQueue

    async def scenario():
        queue = WorkQueue()
        for key in ("a", "b", "a", "a"):
            queue.add(key)
        assert len(queue) == 2
        assert [await queue.get(), await queue.get()] == ["a", "b"]
        assert len(queue) == 0

    run(scenario())


def test_a_key_added_while_it_is_processed_runs_again_after_done_never_twice_at_once():
    from ferry.controllers._worker import WorkQueue

    async def scenario():
        queue = WorkQueue()
        queue.add("a")
        assert await queue.get() == "a"
        queue.add("a")  # changed during its reconcile
        assert len(queue) == 0, "not handed to a second worker while the first holds it"
        queue.done("a")
        assert len(queue) == 1 and await queue.get() == "a"
        queue.done("a")
        assert len(queue) == 0

    run(scenario())


def test_add_after_keeps_the_earliest_due_time_and_add_supersedes_it():
    import asyncio

    from ferry.controllers._worker import WorkQueue

    async def scenario():
        queue = WorkQueue()
        queue.add_after("a", 0.05)
        queue.add_after("a", 30)  # later: ignored
        assert await asyncio.wait_for(queue.get(), timeout=2) == "a"
        queue.done("a")
        queue.add_after("b", 30)
        queue.add("b")  # now: the pending timer is dropped
        assert await asyncio.wait_for(queue.get(), timeout=2) == "b"
        queue.done("b")
        await asyncio.sleep(0.01)
        assert len(queue) == 0
        queue.add_after("c", 0.02)
        queue.forget("c")  # deleted before it was due
        await asyncio.sleep(0.05)
        assert len(queue) == 0

    run(scenario())


def body(uid: str, generation: int, **metadata) -> dict:
    return {"metadata": {"uid": uid, "generation": generation, "namespace": "ns", "name": uid,
                         **metadata}}


def test_objects_are_queued_when_new_or_when_their_spec_changed_not_on_status_writes():
    from ferry.api import KINDS
    from ferry.controllers._worker import Controllers

    async def scenario():
        controllers = Controllers(workers=1)
        info = KINDS["TrainingRun"]
        controllers.observe(info, None, body("u1", 1))  # listed at start: resume
        assert len(controllers.queue) == 1
        assert await controllers.queue.get() == "u1"
        controllers.queue.done("u1")
        controllers.observe(info, "MODIFIED", {**body("u1", 1), "status": {"phase": "Running"}})
        assert len(controllers.queue) == 0, "our own status patch is not a reason"
        assert controllers.objects["u1"].body["status"] == {"phase": "Running"}, "latest body kept"
        controllers.observe(info, "MODIFIED", body("u1", 2))
        assert len(controllers.queue) == 1
        controllers.wake("unknown-uid")
        assert len(controllers.queue) == 1, "a child of an object we do not hold wakes nothing"

    run(scenario())


def test_deleted_or_terminating_objects_are_forgotten():
    from ferry.api import KINDS
    from ferry.controllers._worker import Controllers

    controllers = Controllers(workers=1)
    info = KINDS["ModelVersion"]

    async def scenario():
        controllers.observe(info, "ADDED", body("u1", 1))
        controllers.observe(info, "ADDED", body("u2", 1))
        controllers.observe(info, "MODIFIED", body("u1", 1, deletionTimestamp="2026-01-01T00:00:00Z"))
        controllers.observe(info, "DELETED", body("u2", 1))
        assert controllers.objects == {}

    run(scenario())


def test_a_child_the_apiserver_refuses_sets_accepted_false_with_its_reason_not_a_traceback(
        monkeypatch, caplog):
    import asyncio
    import json
    from types import SimpleNamespace

    import kopf
    from kubernetes.client.rest import ApiException

    from ferry.adapters.kube import ChildRejected
    from ferry.api import KINDS
    from ferry.controllers._worker import RECONCILERS, Context, Controllers, Tracked

    refusal = ApiException(status=422)
    refusal.body = json.dumps({"message": 'CronJob.batch "p" is invalid: spec.timeZone: Invalid value'})

    async def reconcile(ctx, body):
        raise ChildRejected({"kind": "CronJob", "metadata": {"name": "p"}}, refusal)

    patched, posted = [], []

    class Kube:
        async def patch_status(self, info, namespace, name, status):
            patched.append(status)
            return "7"

    monkeypatch.setitem(RECONCILERS, "FeaturePipeline", reconcile)
    monkeypatch.setattr(kopf, "event", lambda body, **event: posted.append(event))
    controllers = Controllers()
    body = {"metadata": {"uid": "u1", "namespace": "ns", "name": "p", "generation": 2}}
    controllers.objects["u1"] = Tracked(KINDS["FeaturePipeline"], body)
    ctx = Context(config=SimpleNamespace(resync_seconds=60), kube=Kube(), store=None)

    assert asyncio.run(controllers._reconcile(ctx, "u1")) == 1.0
    (status,) = patched
    (accepted,) = status["conditions"]
    assert (status["phase"], status["observedGeneration"]) == ("Invalid", 2)
    assert (accepted["type"], accepted["status"], accepted["reason"]) == ("Accepted", "False", "InvalidSpec")
    assert accepted["message"] == ('the apiserver refused CronJob p: CronJob.batch "p" is invalid: '
                                   'spec.timeZone: Invalid value')
    assert [e["type"] for e in posted] == ["Warning"]
    assert not [r for r in caplog.records if r.exc_info]


def test_a_new_training_run_is_accepted_before_any_mlflow_call():
    """ctx is None: the first reconcile of a new run touches neither MLflow nor the cluster."""
    import asyncio

    import kopf

    from ferry.controllers import trainingrun

    body = kopf.Body({"metadata": {"uid": "u1", "namespace": "ns", "name": "r", "generation": 1},
                      "spec": {"image": "trainer:1", "mlflow": {"trackingUri": "http://mlflow"}}})
    outcome = asyncio.run(trainingrun.reconcile(None, body))
    (accepted,) = outcome.status["conditions"]
    assert (accepted["type"], accepted["status"], outcome.status["observedGeneration"]) == \
        ("Accepted", "True", 1)
    assert outcome.requeue_after == trainingrun.ACKNOWLEDGED_REQUEUE


def test_a_call_that_waits_past_its_pools_admission_raises_dependency_busy_and_frees_nothing():
    import asyncio
    import threading

    from ferry.adapters.executors import DependencyBusy, Executors
    from ferry.config import OperatorConfig

    executors = Executors(OperatorConfig(mlflow_workers=1, mlflow_admission_seconds=0.2))
    release = threading.Event()

    async def scenario():
        holding = asyncio.create_task(executors.run("mlflow", release.wait, 5))
        await asyncio.sleep(0.05)  # let it take the only thread
        with pytest.raises(DependencyBusy, match="every mlflow thread stayed busy for 0.2s"):
            await executors.run("mlflow", lambda: "second")
        release.set()
        assert await holding is True
        assert await executors.run("mlflow", lambda: "third") == "third"  # the slot came back

    try:
        asyncio.run(scenario())
    finally:
        executors.shutdown()


def test_a_busy_dependency_defers_the_reconcile_without_backoff_event_or_status(monkeypatch):
    import asyncio
    from types import SimpleNamespace

    import kopf

    from ferry.adapters.executors import DependencyBusy
    from ferry.api import KINDS
    from ferry.controllers._worker import BUSY_RETRY_SECONDS, RECONCILERS, Context, Controllers, Tracked

    async def reconcile(ctx, body):
        raise DependencyBusy("mlflow", 2.0)

    posted = []
    monkeypatch.setitem(RECONCILERS, "TrainingRun", reconcile)
    monkeypatch.setattr(kopf, "event", lambda body, **event: posted.append(event))
    controllers = Controllers()
    body = {"metadata": {"uid": "u1", "namespace": "ns", "name": "r", "generation": 1}}
    controllers.objects["u1"] = Tracked(KINDS["TrainingRun"], body, failures=0)
    ctx = Context(config=SimpleNamespace(resync_seconds=60), kube=None, store=None)

    assert asyncio.run(controllers._reconcile(ctx, "u1")) == BUSY_RETRY_SECONDS
    assert controllers.objects["u1"].failures == 0
    assert posted == []
