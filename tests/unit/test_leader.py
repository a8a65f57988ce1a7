from datetime import datetime, UTC

from ferry.leader import Observation, desired_lease

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def observed(spec, at):
    observation = Observation()
    observation.observe(spec, at)
    return observation


def test_free_lease_is_acquired():
    desired = desired_lease(None, "me", Observation(), 100.0, NOW, 15)
    assert desired["holderIdentity"] == "me"
    assert desired["leaseDurationSeconds"] == 15
    assert desired["leaseTransitions"] == 0
    assert desired["acquireTime"] == desired["renewTime"] == "2026-11-22T12:00:00.000000Z"


def test_lease_held_by_another_fresh_holder_is_respected():
    spec = {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": "t1"}
    assert desired_lease(spec, "me", observed(spec, 100.0), 110.0, NOW, 15) is None


def test_expired_lease_is_taken_over_and_counts_a_transition():
    spec = {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": "t1",
            "leaseTransitions": 2}
    desired = desired_lease(spec, "me", observed(spec, 100.0), 116.0, NOW, 15)
    assert desired["holderIdentity"] == "me"
    assert desired["leaseTransitions"] == 3


def test_expiry_is_measured_from_when_the_record_last_changed_locally():
    """A renewal seen late restarts the clock, whatever the holder's wall clock says."""
    spec = {"holderIdentity": "other", "leaseDurationSeconds": 15, "renewTime": "t1"}
    observation = observed(spec, 100.0)
    renewed = dict(spec, renewTime="t2")
    observation.observe(renewed, 114.0)
    assert desired_lease(renewed, "me", observation, 120.0, NOW, 15) is None
    observation.observe(renewed, 125.0)  # unchanged record: the clock keeps running
    assert observation.seen_at == 114.0


def test_holder_renews_keeping_acquire_time():
    spec = {"holderIdentity": "me", "leaseDurationSeconds": 15, "acquireTime": "a",
            "renewTime": "old", "leaseTransitions": 1}
    desired = desired_lease(spec, "me", observed(spec, 0.0), 1.0, NOW, 15)
    assert desired["acquireTime"] == "a"
    assert desired["renewTime"] == "2026-11-22T12:00:00.000000Z"
    assert desired["leaseTransitions"] == 1


def test_released_lease_is_free_at_once():
    spec = {"holderIdentity": None, "leaseDurationSeconds": 1, "renewTime": "t"}
    assert desired_lease(spec, "me", observed(spec, 100.0), 100.1, NOW, 15)["holderIdentity"] == "me"
