"""Two operator replicas: only the Lease holder reconciles; killing it hands over."""

from __future__ import annotations

import signal
from contextlib import contextmanager

from support.cluster import create_namespace, start_operator
from support.metrics import sample_total
from support.objects import apply, example, get, reconciled
from support.waiting import wait_for

FAST_LEASE = {"FERRY_LEASE_DURATION_SECONDS": "6", "FERRY_RENEW_DEADLINE_SECONDS": "4",
              "FERRY_RETRY_PERIOD_SECONDS": "1"}


def is_leader(replica) -> bool:
    try:
        return sample_total(replica.metrics(), "ferry_leader") == 1
    except Exception:
        return False


def reconciles(replica) -> float:
    return sample_total(replica.metrics(), "ferry_reconcile_total")


def apply_and_wait(cluster, namespace: str, kind: str) -> None:
    obj = example(kind)
    apply(cluster, namespace, obj)
    wait_for(lambda: reconciled(get(cluster, namespace, kind, obj["metadata"]["name"])),
             timeout=30, message=f"{kind} reconciled")


@contextmanager
def two_replicas(cluster, tmp_path):
    """Two operator replicas on one Lease in a namespace of their own, once one of them leads:
    (namespace, leader, standby); both are killed and the namespace deleted afterwards."""
    namespace = create_namespace(cluster, "le")
    env = FAST_LEASE | {"FERRY_LEASE_NAME": f"ferry-{namespace}"}
    replicas = [start_operator(cluster, tmp_path, namespace, **env) for _ in range(2)]
    try:
        wait_for(lambda: sum(map(is_leader, replicas)) == 1, timeout=30, message="one leader")
        yield namespace, *sorted(replicas, key=is_leader, reverse=True)
    finally:
        for replica in replicas:
            replica.stop(signal.SIGKILL)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_only_the_leader_reconciles_and_the_standby_takes_over(cluster, tmp_path):
    with two_replicas(cluster, tmp_path) as (namespace, leader, standby):
        apply_and_wait(cluster, namespace, "TrainingRun")
        assert reconciles(leader) > 0
        assert reconciles(standby) == 0 and not is_leader(standby)

        leader.stop(signal.SIGKILL)  # no graceful release: the standby must wait out the Lease
        wait_for(lambda: is_leader(standby), timeout=30, message="standby takes over")
        apply_and_wait(cluster, namespace, "ModelVersion")
        assert reconciles(standby) > 0


def test_a_leader_paused_past_its_deadline_writes_nothing_when_it_wakes(cluster, tmp_path):
    """SIGSTOP the leader until the standby has taken over and reconciled a new object, then
    SIGCONT it: it must not act on its stale leadership (its writes are fenced) and it exits."""
    with two_replicas(cluster, tmp_path) as (namespace, leader, standby):
        leader.process.send_signal(signal.SIGSTOP)
        wait_for(lambda: is_leader(standby), timeout=30, message="standby takes over")
        obj = example("TrainingRun")
        apply(cluster, namespace, obj)
        wait_for(lambda: reconciled(get(cluster, namespace, "TrainingRun", obj["metadata"]["name"])),
                 timeout=30, message="the new leader reconciled the run")
        before = len(leader.log())
        leader.process.send_signal(signal.SIGCONT)
        assert leader.process.wait(30) == 1, "the woken leader sees it lost the Lease and exits"
        woken = leader.log()[before:]
        about = f"TrainingRun {namespace}/{obj['metadata']['name']}"
        acted = [line for line in woken.splitlines() if about in line and "not written" not in line]
        assert not acted, f"the paused leader acted after waking: {acted}"
        assert "lost leadership" in woken
        assert is_leader(standby) and reconciles(standby) > 0


def test_a_clean_stop_hands_over_at_once(cluster, tmp_path):
    """SIGTERM releases the Lease before kopf winds down: the standby leads within 2 s instead of
    waiting out the lease duration (6 s here)."""
    with two_replicas(cluster, tmp_path) as (namespace, leader, standby):
        leader.process.send_signal(signal.SIGTERM)
        wait_for(lambda: is_leader(standby), timeout=2, interval=0.05,
                 message="the standby leads within 2 s of SIGTERM")
        assert leader.process.wait(30) == 0, "a clean stop exits 0"
        assert "released leadership" in leader.log()
        apply_and_wait(cluster, namespace, "ModelVersion")
