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
