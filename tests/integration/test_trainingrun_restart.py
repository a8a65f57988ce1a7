"""Whole-job restart of a distributed TrainingRun on the real control plane and the real node."""

from __future__ import annotations

import json

from ferry.status import find_condition
from support.cluster import IMAGE
from support.objects import apply, get
from support.waiting import wait_for

# Worker 1 fails on the first attempt while worker 0 "hangs on a collective" (sleeps): the whole
# attempt must be stopped and both workers started again as attempt 1, where both succeed.
WORKER = """
import os, sys, time
attempt, index = int(os.environ['FERRY_ATTEMPT']), int(os.environ['JOB_COMPLETION_INDEX'])
print(f'attempt {attempt} worker {index} rank {os.environ["NODE_RANK"]}', flush=True)
if attempt == 0 and index == 1:
    sys.exit(1)
if attempt == 0:
    time.sleep(300)
"""


def pods_of(cluster, namespace, job):
    return json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                      f"batch.kubernetes.io/job-name={job}", "-o",
                                      "json").stdout)["items"]


def test_a_failed_worker_restarts_all_workers_together(cluster, namespace, operator):
    apply(cluster, namespace, {
        "apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun", "metadata": {"name": "ddp"},
        "spec": {"image": IMAGE, "command": ["python", "-c", WORKER], "workers": 2,
                 "maxRestarts": 2}})
    done = wait_for(lambda: (o := get(cluster, namespace, "TrainingRun", "ddp"))
                    ["status"].get("phase") in ("Succeeded", "Failed") and o,
                    timeout=180, interval=1, message="distributed run finished")
    status = done["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["restarts"] == 1 and status["attempts"] == 2
    assert status["jobName"] == "ddp-a1"

    first = json.loads(cluster.kubectl("get", "job", "ddp", "-n", namespace, "-o",
                                       "json").stdout)
    assert find_condition(first["status"]["conditions"], "Failed")["status"] == "True"
    # The hanging worker 0 of attempt 0 was stopped (the Job controller deletes the workers of
    # a failed Job), not left running next to attempt 1; the failed worker 1 is kept for logs.
    old = pods_of(cluster, namespace, "ddp")
    assert [p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"]
            for p in old] == ["1"] and old[0]["status"]["phase"] == "Failed"
    second = json.loads(cluster.kubectl("get", "job", "ddp-a1", "-n", namespace, "-o",
                                        "json").stdout)
    assert second["metadata"]["annotations"]["ferry.dev/restart-cause"] == "Failure"
    assert second["status"]["succeeded"] == 2
    assert second["spec"]["completionMode"] == "Indexed"
    env = {e["name"]: e.get("value") for e in
           second["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["FERRY_ATTEMPT"] == "1" and env["MASTER_ADDR"].startswith("ddp-a1-0.")
    # Attempt 1's workers started only after attempt 0 had failed as a whole (Failed is set
    # once all its workers have stopped).
    failed_at = find_condition(first["status"]["conditions"], "Failed")["lastTransitionTime"]
    new = pods_of(cluster, namespace, "ddp-a1")
    assert len(new) == 2
    assert failed_at <= min(p["status"]["containerStatuses"][0]["state"]["terminated"]
                            ["startedAt"] for p in new)
    service = json.loads(cluster.kubectl("get", "service", "ddp-workers", "-n", namespace, "-o",
                                         "json").stdout)
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": "ddp-a1"}
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                             "reason=Restarting").stdout
    assert "restarting all 2 workers as attempt 1" in events
