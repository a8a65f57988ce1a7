"""Foundation figures: control-plane start, operator acceptance throughput and memory.

Run with ``make bench``; prints figures, asserts only that the work completed (no timed asserts).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import yaml

from ferry_dev.controlplane import LocalCluster, ensure_binaries
from support.cluster import create_namespace, start_operator
from support.waiting import wait_for

OBJECTS = 300


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_control_plane_warm_start(tmp_path):
    bin_dir = ensure_binaries()
    timings = []
    for attempt in range(3):
        cluster = LocalCluster(tmp_path / f"c{attempt}", name=f"bench-{attempt}", bin_dir=bin_dir)
        started = time.monotonic()
        cluster.start()
        timings.append(time.monotonic() - started)
        stopped = time.monotonic()
        cluster.stop()
        timings.append(-(time.monotonic() - stopped))
    starts = [t for t in timings if t > 0]
    stops = [-t for t in timings if t < 0]
    print(f"\nBENCH control plane + 4 KWOK nodes ready: "
          f"{', '.join(f'{t:.1f}s' for t in starts)} (best {min(starts):.1f}s); "
          f"stop: {max(stops):.1f}s worst")


def test_operator_accepts_many_objects(cluster, tmp_path):
    namespace = create_namespace(cluster, "bench")
    operator = start_operator(cluster, tmp_path, namespace,
                              FERRY_LEASE_NAME=f"ferry-{namespace}", FERRY_LOG_LEVEL="WARNING")
    idle_rss = rss_mb(operator.process.pid)
    # ModelVersions without an MLflow URI: every reconcile accepts the spec and reports
    # RegistryReachable=False, so this measures the operator, not MLflow.
    runs = [{"apiVersion": "ferry.dev/v1alpha1", "kind": "ModelVersion",
             "metadata": {"name": f"model-{i}", "namespace": namespace},
             "spec": {"modelName": "bench", "source": "s3://bench/model/"}} for i in range(OBJECTS)]
    started = time.monotonic()
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(runs))
    created = time.monotonic() - started

    def accepted() -> int:
        items = json.loads(cluster.kubectl("get", "modelversions", "-n", namespace, "-o",
                                           "json").stdout)["items"]
        return sum(1 for item in items if item.get("status", {}).get("observedGeneration"))

    wait_for(lambda: accepted() == OBJECTS, timeout=600, interval=1,
             message=f"{OBJECTS} ModelVersions reconciled")
    total = time.monotonic() - started
    busy_rss = rss_mb(operator.process.pid)
    operator.stop()
    print(f"\nBENCH {OBJECTS} ModelVersions: kubectl apply {created:.1f}s, all Accepted after "
          f"{total:.1f}s ({OBJECTS / total:.0f} objects/s); operator RSS idle {idle_rss:.0f} MiB, "
          f"with {OBJECTS} workers {busy_rss:.0f} MiB")
