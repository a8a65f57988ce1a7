"""TrainingRun figures: 1,000 runs on KWOK nodes against the raw rate of creating 1,000 Jobs.

Run with ``make bench``. Its own control plane (12 KWOK CPU nodes, room for every pod), no MLflow
(the operator runs without ``FERRY_MLFLOW_URI``), pods tolerate the KWOK taint and complete at
once (the cluster's KWOK run time is 0 s instead of the harness default). API writes come from
the apiserver's ``apiserver_request_total``; Ferry's share per run is the writes of the Ferry
phase minus the client's own creates, minus what a raw Job's lifecycle costs (Job controller,
scheduler, KWOK), so it counts exactly what the operator adds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
from kubernetes import client
from kubernetes import config as kube_config

from ferry_dev.controlplane import KWOK_TAINT_KEY, LocalCluster, default_fleet, ensure_binaries
from ferry_dev.devenv import install_crds
from ferry_dev.kwokstages import RUN_SECONDS_ENV
from support.cluster import ClusterHandle, create_namespace, start_operator
from support.waiting import wait_for
from test_bench_foundation import rss_mb

RUNS = int(os.environ.get("FERRY_BENCH_RUNS", "1000"))
CLIENT_THREADS = 8
WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
SAMPLE = re.compile(r'^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')
KWOK_POD = {"tolerations": [{"key": KWOK_TAINT_KEY, "operator": "Exists",
                             "effect": "NoSchedule"}],
            "nodeSelector": {"type": "kwok"}}


def write_requests(cluster: ClusterHandle) -> Counter:
    """apiserver write requests so far by (verb, resource/subresource); leases left out."""
    counts: Counter = Counter()
    for line in cluster.kubectl("get", "--raw", "/metrics").stdout.splitlines():
        match = SAMPLE.match(line)
        if not match:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") != "leases":
            resource = labels["resource"] + (f"/{labels['subresource']}"
                                             if labels.get("subresource") else "")
            counts[(labels["verb"], resource)] += int(float(match["value"]))
    return counts


def settled_writes(cluster: ClusterHandle) -> Counter:
    """Write counts once the last Events and status patches have landed (no change in 2 s)."""
    last = [write_requests(cluster)]

    def unchanged() -> Counter | None:
        current = write_requests(cluster)
        same, last[0] = sum(current.values()) == sum(last[0].values()), current
        return current if same else None

    return wait_for(unchanged, timeout=120, interval=2, message="API writes settle")


def create_all(create, items: list[dict]) -> float:
    """Create every item with CLIENT_THREADS client threads; seconds it took."""
    started = time.monotonic()
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        list(pool.map(create, items))
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def items(response) -> list[dict]:
    """Decode a list response as plain JSON (the client's models cost seconds per 1,000 items)."""
    return json.loads(response.data)["items"]


def count_jobs(batch: client.BatchV1Api, namespace: str, succeeded: bool = False) -> int:
    jobs = items(batch.list_namespaced_job(namespace, _preload_content=False))
    return sum(1 for j in jobs if not succeeded or j.get("status", {}).get("succeeded"))


@pytest.mark.timeout(3600)
def test_thousand_training_runs_against_raw_jobs(tmp_path, monkeypatch):
    monkeypatch.setenv(RUN_SECONDS_ENV, "0")  # read when the cluster's kwok stages are written
    local = LocalCluster(tmp_path / "cluster", name="bench-tr", bin_dir=ensure_binaries(),
                         fleet=default_fleet(cpu_nodes=12, gpu_nodes=0))
    local.start()
    operator = None
    try:
        install_crds(local)
        api_client = kube_config.new_client_from_config(config_file=str(local.kubeconfig))
        cluster = ClusterHandle(local, api_client)
        batch, custom = client.BatchV1Api(api_client), client.CustomObjectsApi(api_client)

        # Raw: the same number of Jobs, created directly with the client.
        raw_ns = create_namespace(cluster, "raw")
        before = write_requests(cluster)
        jobs = [{"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"job-{i}"},
                 "spec": {"backoffLimit": 0, "template": {"spec": {
                     "restartPolicy": "Never", **KWOK_POD,
                     "containers": [{"name": "trainer", "image": "trainer:1",
                                     "command": ["train"]}]}}}} for i in range(RUNS)]
        started = time.monotonic()
        raw_create = create_all(lambda j: batch.create_namespaced_job(raw_ns, j), jobs)
        wait_for(lambda: count_jobs(batch, raw_ns, succeeded=True) == RUNS, timeout=900,
                 interval=0.5, message="raw Jobs succeeded")
        raw_done = time.monotonic() - started
        raw_writes = settled_writes(cluster) - before

        # Ferry: TrainingRuns, the operator creates the Jobs.
        namespace = create_namespace(cluster, "bench")
        operator = start_operator(cluster, tmp_path, namespace, FERRY_MLFLOW_URI="",
                                  FERRY_LEASE_NAME=f"ferry-{namespace}",
                                  FERRY_LOG_LEVEL="WARNING")
        idle_rss = rss_mb(operator.process.pid)
        runs = [{"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
                 "metadata": {"name": f"run-{i}"},
                 "spec": {"image": "trainer:1", "command": ["train"], "backoffLimit": 0,
                          "tolerations": KWOK_POD["tolerations"],
                          "nodeSelector": KWOK_POD["nodeSelector"]}} for i in range(RUNS)]
        before = write_requests(cluster)
        cpu_before = cpu_seconds(operator.process.pid)
        started = time.monotonic()
        ferry_create = create_all(lambda r: custom.create_namespaced_custom_object(
            "ferry.dev", "v1alpha1", namespace, "trainingruns", r), runs)
        peak_rss = [idle_rss]

        def all_jobs() -> bool:
            peak_rss.append(rss_mb(operator.process.pid))
            return count_jobs(batch, namespace) == RUNS

        wait_for(all_jobs, timeout=900, interval=0.5, message="every TrainingRun has its Job")
        jobs_exist = time.monotonic() - started

        def all_succeeded() -> bool:
            peak_rss.append(rss_mb(operator.process.pid))
            runs = items(custom.list_namespaced_custom_object(
                "ferry.dev", "v1alpha1", namespace, "trainingruns", _preload_content=False))
            return sum(1 for r in runs if r.get("status", {}).get("phase") == "Succeeded") == RUNS

        wait_for(all_succeeded, timeout=1800, interval=0.5, message="every TrainingRun Succeeded")
        ferry_done = time.monotonic() - started
        operator_cpu = cpu_seconds(operator.process.pid) - cpu_before
        ferry_writes = settled_writes(cluster) - before
    finally:
        if operator is not None:
            operator.stop(signal.SIGKILL)
        local.stop()

    # What the operator adds: the Ferry phase without the client's creates, minus a raw Job's
    # lifecycle without the client's creates (the operator's Job applies stay in).
    ferry_side, raw_side = Counter(ferry_writes), Counter(raw_writes)
    ferry_side[("POST", "trainingruns")] -= RUNS
    raw_side[("POST", "jobs")] -= RUNS
    added = {k: (ferry_side[k] - raw_side[k]) / RUNS for k in set(ferry_side) | set(raw_side)}
    breakdown = ", ".join(f"{verb} {resource} {n:+.2f}"
                          for (verb, resource), n in sorted(added.items()) if abs(n) >= 0.05)
    print(f"\nBENCH raw: {RUNS} Jobs created in {raw_create:.1f}s ({RUNS / raw_create:.0f}/s, "
          f"{CLIENT_THREADS} client threads), all Succeeded after {raw_done:.1f}s "
          f"({RUNS / raw_done:.0f}/s); {sum(raw_writes.values()) / RUNS:.1f} API writes per Job")
    print(f"BENCH ferry: {RUNS} TrainingRuns created in {ferry_create:.1f}s; all Jobs exist "
          f"after {jobs_exist:.1f}s ({RUNS / jobs_exist:.0f}/s), all Succeeded after "
          f"{ferry_done:.1f}s ({RUNS / ferry_done:.0f}/s) = {raw_done / ferry_done:.2f}x the raw "
          f"end-to-end rate")
    print(f"BENCH ferry API writes per run lifecycle: {sum(added.values()):.2f} by the operator "
          f"({sum(ferry_writes.values()) / RUNS:.1f} by all components); per kind: {breakdown}")
    print(f"BENCH operator RSS idle {idle_rss:.0f} MiB, peak with {RUNS} runs "
          f"{max(peak_rss):.0f} MiB; operator CPU {operator_cpu:.1f}s "
          f"({1000 * operator_cpu / RUNS:.0f} ms per run lifecycle); load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
