"""Two operator replicas: only the Lease holder reconciles; killing it hands over."""

from __future__ import annotations

import signal

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


def test_only_the_leader_reconciles_and_the_standby_takes_over(cluster, tmp_path):
    namespace = create_namespace(cluster, "le")
    env = FAST_LEASE | {"FERRY_LEASE_NAME": f"ferry-{namespace}"}
    replicas = [start_operator(cluster, tmp_path, namespace, **env) for _ in range(2)]
    try:
        wait_for(lambda: sum(map(is_leader, replicas)) == 1, timeout=30, message="one leader")
        leader, standby = sorted(replicas, key=is_leader, reverse=True)

        apply_and_wait(cluster, namespace, "TrainingRun")
        assert reconciles(leader) > 0
        assert reconciles(standby) == 0 and not is_leader(standby)

        leader.stop(signal.SIGKILL)  # no graceful release: the standby must wait out the Lease
        wait_for(lambda: is_leader(standby), timeout=30, message="standby takes over")
        apply_and_wait(cluster, namespace, "ModelVersion")
        assert reconciles(standby) > 0
    finally:
        for replica in replicas:
            replica.stop(signal.SIGKILL)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)
