"""Sweep trials in tests: a trial program that logs an objective to MLflow, and its Jobs."""

from __future__ import annotations

import json

# The objective peaks at lr = 0.01; every trial takes a moment so that overlaps are visible.
TRIAL = """
import json, math, os, time
import mlflow
params = json.load(open(os.environ['FERRY_PARAMETERS_FILE']))
lr = float(params['lr'])
client = mlflow.tracking.MlflowClient()
run = os.environ['MLFLOW_RUN_ID']
time.sleep(2)
client.log_metric(run, 'score', 1.0 - abs(math.log10(lr) + 2.0))
client.log_metric(run, 'loss', lr)
client.log_param(run, 'lr', params['lr'])
"""


def jobs_of(cluster, namespace, trial):
    items = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-l",
                                       f"ferry.dev/trainingrun={trial}", "-o", "json").stdout)
    return items["items"]
