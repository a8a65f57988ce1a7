"""The example trainer for real: as a TrainingRun on the real node against the real MLflow
server and S3 (tracked, model logged, resumed after an eviction), and its DDP path under torchrun.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import uuid

import numpy as np
import pytest
from kubernetes import client

from ferry.adapters.mlflow import Registry
from ferry_dev.processes import free_port
from ferry.examples import config as settings
from ferry.examples import data as synthetic
from ferry.examples.models import World
from ferry.examples.dataset import batches, prepare
from ferry.examples.trainer import Quiet, train
from support.cluster import IMAGE
from support.objects import apply_manifests, get_resource, phase_reached
from support.torch_cache import ensure_torch
from support.waiting import wait_for

SECRET_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION",
               "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL")


def phase(cluster, namespace, name, wanted):
    return phase_reached(get_resource(cluster, namespace, "trainingrun.ferry.dev", name), wanted)


def credentials(namespace, services) -> dict:
    env = services.env()
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s3-creds", "namespace": namespace},
            "stringData": {k: env[k] for k in SECRET_KEYS}}


def example_run(namespace, name, features, **spec) -> dict:
    """A TrainingRun of the example trainer, its S3/MLflow credentials from the Secret."""
    env = [{"name": k, "valueFrom": {"secretKeyRef": {"name": "s3-creds", "key": k}}}
           for k in SECRET_KEYS]
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"image": IMAGE,
                     "command": ["python", "-m", "ferry.examples.trainer", "--features", features],
                     "mlflow": {"experiment": f"examples-{namespace}"}, "env": env, **spec}}


def beats_the_majority_class(predicted: np.ndarray, truth: np.ndarray) -> bool:
    """Fraud is rare, so "never fraud" is already accurate: a model must do better than that."""
    majority = max(np.mean(truth), 1 - np.mean(truth))
    return bool(np.mean(predicted == truth) > majority + 0.01)


@pytest.fixture
def features(services, namespace) -> str:
    """Synthetic transactions in S3, as a FeaturePipeline run would leave them."""
    uri = f"s3://{services.env()['FERRY_S3_BUCKET']}/{namespace}/features/run-1/"
    with pytest.MonkeyPatch.context() as patch:
        for key, value in services.env().items():
            patch.setenv(key, value)
        synthetic.write(synthetic.transactions(3000, seed=11), uri)
    return uri


@pytest.fixture
def client_env(services, monkeypatch):
    """This process talks to S3 and MLflow like the pod does."""
    for key, value in services.env().items():
        monkeypatch.setenv(key, value)


def test_the_example_trains_on_the_local_runner_and_logs_metrics_and_model(
        services, cluster, namespace, operator, features, client_env):
    apply_manifests(cluster, credentials(namespace, services),
          example_run(namespace, "fraud", features, parameters={"epochs": "3", "seed": "1"}))
    done = wait_for(lambda: phase(cluster, namespace, "fraud", "Succeeded"), timeout=240,
                    message="example TrainingRun Succeeded")
    registry = Registry(services.endpoints["mlflow"])
    run = registry.client.get_run(done["status"]["mlflowRunId"])
    assert run.info.status == "FINISHED"
    assert done["status"]["metrics"] == run.data.metrics
    assert run.data.metrics["auc"] > 0.85
    assert run.data.metrics["epoch"] == 3
    assert run.data.params["epochs"] == "3" and run.data.params["model"] == "logistic"
    losses = registry.client.get_metric_history(run.info.run_id, "loss")
    assert [m.step for m in losses] == sorted(m.step for m in losses) and len(losses) == 3

    import mlflow

    models = registry.client.search_logged_models(
        [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    assert [m.name for m in models] == ["model"]
    source = f"runs:/{run.info.run_id}/model"
    assert registry.input_columns(source) == synthetic.feature_names()
    mlflow.set_tracking_uri(services.endpoints["mlflow"])
    model = mlflow.pyfunc.load_model(source)
    sample = synthetic.transactions(1000, seed=99).to_pandas()
    predicted = np.asarray(model.predict(sample[synthetic.feature_names()]))
    assert predicted.shape == (1000,) and set(predicted.tolist()) <= {0, 1}
    assert beats_the_majority_class(predicted, sample["is_fraud"].to_numpy())


def test_an_evicted_run_resumes_from_its_checkpoint_without_counting_the_attempt(
        services, cluster, namespace, operator, features, client_env):
    bucket = services.env()["FERRY_S3_BUCKET"]
    parameters = {"epochs": "4", "seed": "2", "min_epoch_seconds": "4"}
    apply_manifests(cluster, credentials(namespace, services),
          example_run(namespace, "preempted", features, parameters=parameters, backoffLimit=0,
                      checkpoint={"uri": f"s3://{bucket}/{namespace}/checkpoints/"}))
    s3 = services.s3_client()
    pointer = f"{namespace}/checkpoints/latest.json"
    first = wait_for(lambda: json.loads(s3.get_object(Bucket=bucket, Key=pointer)["Body"].read()),
                     timeout=180, message="the first checkpoint")
    pods = client.CoreV1Api(cluster.api_client).list_namespaced_pod(
        namespace, label_selector="batch.kubernetes.io/job-name=preempted").items
    assert len(pods) == 1
    evicted = pods[0].metadata.name
    client.CoreV1Api(cluster.api_client).create_namespaced_pod_eviction(
        evicted, namespace, client.V1Eviction(metadata=client.V1ObjectMeta(
            name=evicted, namespace=namespace)))

    done = wait_for(lambda: phase(cluster, namespace, "preempted", "Succeeded"), timeout=240,
                    message="the evicted run Succeeded after resuming")
    registry = Registry(services.endpoints["mlflow"])
    run = registry.client.get_run(done["status"]["mlflowRunId"])
    resumed = registry.client.get_metric_history(run.info.run_id, "resumed_from_step")
    assert len(resumed) == 1 and resumed[0].value >= first["step"] > 0
    assert run.data.tags["resumed_from_step"] == str(int(resumed[0].value))
    epochs = [m.value for m in registry.client.get_metric_history(run.info.run_id, "epoch")]
    assert sorted(epochs) == [1, 2, 3, 4]  # every epoch trained once, none repeated
    job = get_resource(cluster, namespace, "job", "preempted")
    assert job["spec"]["backoffLimit"] == 0 and not job["status"].get("failed")
    # The resumed model is exactly the one an uninterrupted run trains.
    straight = train(settings.parse(parameters | {"min_epoch_seconds": "0"}), features, None,
                     Quiet(), World(), threading.Event(), say=lambda _: None)
    assert run.data.metrics["auc"] == pytest.approx(straight.metrics["auc"], abs=1e-12)
    assert run.data.metrics["accuracy"] == pytest.approx(straight.metrics["accuracy"], abs=1e-12)


def torchrun(features: str, checkpoint: str, services, *params: str) -> subprocess.CompletedProcess:
    """The trainer on two CPU processes under torchrun (gloo), torch from the test cache."""
    env = os.environ | services.env() | {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ensure_torch()),
                                                    os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
               "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
               "-m", "ferry.examples.trainer", "--features", features, "--checkpoint", checkpoint,
               "--tracking-uri", services.endpoints["mlflow"], "--experiment", "ddp-tests",
               "--param", "model=torch_mlp", "--param", "batch_size=64", "--param", "lr=0.02"]
    for param in params:
        command += ["--param", param]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def test_the_ddp_path_trains_and_resumes_under_torchrun_with_two_cpu_processes(services,
                                                                               client_env):
    bucket = services.env()["FERRY_S3_BUCKET"]
    prefix = f"s3://{bucket}/ddp-{uuid.uuid4().hex[:8]}"
    synthetic.write(synthetic.transactions(3000, seed=11), f"{prefix}/features/")
    first = torchrun(f"{prefix}/features/", f"{prefix}/checkpoints/", services, "epochs=2")
    # Both ranks trained every global batch of every epoch.
    for rank in (0, 1):
        assert f"[rank {rank}] epoch 2/2" in first.stdout
    train_rows = 3000 - round(3000 * settings.TrainConfig().test_fraction)
    per_epoch = len(batches(np.arange(train_rows), 64, minimum=2))
    registry = Registry(services.endpoints["mlflow"])
    run_id = re.search(r"mlflow run (\w+):", first.stdout).group(1)
    run = registry.client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["world_size"] == "2" and run.data.params["model"] == "torch_mlp"
    assert run.data.metrics["step"] == 2 * per_epoch
    assert run.data.metrics["auc"] > 0.85
    s3 = services.s3_client()
    pointer = json.loads(s3.get_object(Bucket=bucket, Key=f"{prefix.split('/', 3)[3]}"
                                       "/checkpoints/latest.json")["Body"].read())
    assert pointer["step"] == 2 * per_epoch

    import mlflow  # the logged MLP is served by numpy: this process has no torch

    mlflow.set_tracking_uri(services.endpoints["mlflow"])
    model = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    held_out = prepare(synthetic.transactions(3000, seed=11), settings.TrainConfig())
    predicted = np.asarray(model.predict(held_out.raw_test))
    # The pyfunc reproduces the trained network: its held-out accuracy is the one logged.
    assert np.mean(predicted == held_out.y_test) == pytest.approx(
        run.data.metrics["accuracy"], abs=1.5 / len(held_out.y_test))

    more = torchrun(f"{prefix}/features/", f"{prefix}/checkpoints/", services, "epochs=3")
    for rank in (0, 1):
        assert f"[rank {rank}] resumed from {prefix}/checkpoints/step-" in more.stdout
        assert f"[rank {rank}] epoch 3/3" in more.stdout
        assert f"[rank {rank}] epoch 2/3" not in more.stdout
    resumed = registry.client.get_run(re.search(r"mlflow run (\w+):", more.stdout).group(1))
    assert resumed.data.metrics["resumed_from_step"] == 2 * per_epoch
    assert resumed.data.metrics["step"] == 3 * per_epoch
