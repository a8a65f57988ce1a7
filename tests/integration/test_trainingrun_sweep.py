"""A TrainingRun sweep on the real control plane: trials as child TrainingRuns on the local
runner, bounded parallelism, best-trial selection and nested MLflow runs."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from ferry.adapters.mlflow import Registry
from ferry.status import find_condition
from support.cluster import IMAGE
from support.objects import apply, get
from support.sweeps import TRIAL, jobs_of
from support.waiting import wait_for

def parse(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """Largest number of half-open [start, end) intervals covering one instant."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals],
                   key=lambda edge: (edge[0], edge[1]))  # an end before a start at the same second
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


def test_grid_sweep_bounded_parallelism_best_trial_and_nested_mlflow_runs(cluster, namespace,
                                                                         operator, services):
    experiment = f"sweep-{namespace}"
    apply(cluster, namespace, {
        "apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": "tune"},
        "spec": {"image": IMAGE, "command": ["python", "-c", TRIAL],
                 "parameters": {"lr": "1", "epochs": "2"},
                 "mlflow": {"experiment": experiment},
                 "sweep": {"algorithm": "grid", "maxTrials": 4, "parallelism": 2,
                           "parameters": [{"name": "lr", "values": ["0.001", "0.01", "0.1",
                                                                    "1"]}],
                           "objective": {"metric": "score", "goal": "maximize"}}}})
    done = wait_for(lambda: (o := get(cluster, namespace, "TrainingRun", "tune"))
                    ["status"].get("phase") in ("Succeeded", "Failed") and o,
                    timeout=300, interval=1, message="sweep finished")
    status = done["status"]
    assert status["phase"] == "Succeeded", status.get("message")
    trials = {t["name"]: t for t in status["trials"]}
    assert sorted(trials) == ["tune-t0", "tune-t1", "tune-t2", "tune-t3"]
    assert [trials[f"tune-t{i}"]["parameters"] for i in range(4)] == [
        {"lr": v} for v in ("0.001", "0.01", "0.1", "1")]
    assert all(t["phase"] == "Succeeded" for t in trials.values())
    assert status["bestTrial"] == "tune-t1"
    assert status["bestObjective"] == pytest.approx(1.0)
    assert trials["tune-t0"]["objective"] == pytest.approx(0.0)
    assert status["metrics"] == {"score": pytest.approx(1.0), "loss": pytest.approx(0.01)}
    assert "tune-t1" in find_condition(status["conditions"], "Succeeded")["message"]

    # Each trial is a full TrainingRun owned by the sweep, with the parameters merged in.
    child = get(cluster, namespace, "TrainingRun", "tune-t2")
    assert child["metadata"]["ownerReferences"][0]["uid"] == done["metadata"]["uid"]
    assert child["metadata"]["labels"]["ferry.dev/sweep"] == "tune"
    assert child["spec"]["parameters"] == {"lr": "0.1", "epochs": "2"}
    assert "sweep" not in child["spec"]

    # Never more than 2 trials at once, judged by the trials' own Jobs (one per trial).
    intervals = []
    for name in trials:
        (job,) = jobs_of(cluster, namespace, name)
        intervals.append((parse(job["status"]["startTime"]),
                          parse(job["status"]["completionTime"])))
    assert most_at_once(intervals) == 2

    # MLflow: the sweep's run is the parent of every trial's run.
    registry = Registry(services.endpoints["mlflow"])
    parent = registry.client.get_run(status["mlflowRunId"])
    assert parent.info.status == "FINISHED"
    runs = registry.client.search_runs([parent.info.experiment_id])
    assert len(runs) == 5
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.info.run_id for r in nested) == sorted(t["mlflowRunId"]
                                                           for t in trials.values())
    assert all(math.isclose(r.data.metrics["score"], trials[r.data.tags["ferry.dev/name"]]
                            ["objective"]) for r in nested)


def test_most_at_once_counts_touching_intervals_as_sequential():
    t = [datetime(2026, 1, 1, 0, 0, s) for s in range(6)]
    assert most_at_once([(t[0], t[2]), (t[2], t[4])]) == 1
    assert most_at_once([(t[0], t[3]), (t[1], t[4]), (t[2], t[5])]) == 3
