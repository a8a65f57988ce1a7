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


class FakeLeases:
    """A coordination API holding one Lease with a resourceVersion, like the apiserver's."""

    def __init__(self):
        from kubernetes import client
        self.api_client = client.ApiClient()
        self.lease = None
        self.version = 0

    def read_namespaced_lease(self, name, namespace):
        from kubernetes.client.rest import ApiException
        if self.lease is None:
            raise ApiException(status=404)
        return self.lease

    def _store(self, body):
        from kubernetes import client
        self.version += 1
        spec = body["spec"] if isinstance(body, dict) else self.api_client.sanitize_for_serialization(
            body.spec)
        self.lease = client.V1Lease(
            metadata=client.V1ObjectMeta(name="l", namespace="n", resource_version=str(self.version)),
            spec=client.V1LeaseSpec(
                holder_identity=spec.get("holderIdentity"),
                lease_duration_seconds=spec.get("leaseDurationSeconds"),
                renew_time=spec.get("renewTime"), acquire_time=spec.get("acquireTime"),
                lease_transitions=spec.get("leaseTransitions")))

    def create_namespaced_lease(self, namespace, body):
        self._store(body)

    def replace_namespaced_lease(self, name, namespace, body):
        self._store(body)


def elector(monkeypatch, clock):
    from ferry import leader
    monkeypatch.setattr(leader.time, "monotonic", lambda: clock[0])
    return leader.LeaderElector(FakeLeases(), "l", "n", "me", duration=6, renew_deadline=4)


def test_a_holder_paused_past_its_renew_deadline_is_fenced_before_it_renews(monkeypatch):
    clock = [100.0]
    candidate = elector(monkeypatch, clock)
    assert not candidate.leading()
    assert candidate.try_acquire_or_renew() and candidate.leading()
    clock[0] += 3.9
    assert candidate.leading(), "inside the renew deadline"
    clock[0] += 0.2  # SIGSTOP, SIGCONT: the clock moved on, the renew loop has not run yet
    assert not candidate.leading()


def test_release_closes_the_fence_frees_the_lease_and_never_reacquires(monkeypatch):
    clock = [100.0]
    candidate = elector(monkeypatch, clock)
    assert candidate.try_acquire_or_renew()
    candidate.release()
    assert not candidate.leading()
    assert candidate.api.lease.spec.holder_identity is None
    assert not candidate.try_acquire_or_renew(), "a stopping replica does not take it back"


def test_the_kube_adapter_refuses_writes_while_not_leading():
    import asyncio

    import pytest

    from ferry.adapters.executors import Executors
    from ferry.adapters.kube import Kube, NotLeading
    from ferry.config import OperatorConfig

    kube = Kube(api_client=None, executors=Executors(OperatorConfig()), leading=lambda: False)
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "n"}}
    for write in (kube.apply(manifest), kube.delete("v1", "ConfigMap", "n", "x")):
        with pytest.raises(NotLeading):
            asyncio.run(write)
