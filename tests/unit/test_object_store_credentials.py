"""One S3 credentials reference (``spec.objectStore.secretRef``) for every pod Ferry starts:
the spec's Secret, else the operator's default (optional), else none; explicit env still wins."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ferry.api import parse_spec
from ferry.api.inferenceservice import Retrain, ServedModel
from ferry.builders.driftmonitor import build_drift_monitor
from ferry.builders.featurepipeline import FeatureSettings, build_child
from ferry.builders.inferenceservice import Serving, build_deployment
from ferry.builders.trainingrun import Tracking, build_job
from ferry.config import OperatorConfig
from ferry.controllers.drift import monitor_env
from ferry.reconcilers.retrain import decide_retrain

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
TEAM = {"secretRef": {"name": "team-s3"}}
SPEC_SECRET = [{"secretRef": {"name": "team-s3"}}]
DEFAULT_SECRET = [{"secretRef": {"name": "ferry-s3", "optional": True}}]
REGION = {"name": "AWS_DEFAULT_REGION", "value": "eu-north-1"}
ENDPOINT = "http://s3.local:8333"


def owner(kind: str, spec: dict | None = None) -> dict:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": kind, "spec": spec or {},
            "metadata": {"name": "fraud", "namespace": "team-a", "uid": "u-1"}}


def feature_containers(extra: dict, default: str | None) -> list[dict]:
    """The transform (init) and validate containers of a container-transform pipeline."""
    raw = {"featureSet": "tx", "version": "v1",
           "transform": {"container": {"image": "etl:1", "env": extra.pop("env", [])}}, **extra}
    settings = FeatureSettings(image="ferry:1", bucket="ferry", prefix="features",
                               s3_endpoint=ENDPOINT, object_store_secret=default)
    pod = build_child(owner("FeaturePipeline"), parse_spec("FeaturePipeline", raw),
                      settings)["spec"]["template"]["spec"]
    return pod["initContainers"] + pod["containers"]


def sql_feature_containers(extra: dict, default: str | None) -> list[dict]:
    raw = {"featureSet": "tx", "version": "v1", **extra,
           "transform": {"sql": {"query": "select 1",
                                 "sources": [{"name": "raw", "uri": "s3://raw/x.parquet"}]}}}
    settings = FeatureSettings(image="ferry:1", bucket="ferry", prefix="features",
                               s3_endpoint=ENDPOINT, object_store_secret=default)
    return build_child(owner("FeaturePipeline"), parse_spec("FeaturePipeline", raw),
                       settings)["spec"]["template"]["spec"]["containers"]


def trainer_containers(extra: dict, default: str | None) -> list[dict]:
    spec = parse_spec("TrainingRun", {"image": "trainer:1", **extra})
    tracking = Tracking(s3_endpoint=ENDPOINT, object_store_secret=default)
    return build_job(owner("TrainingRun"), spec, tracking)["spec"]["template"]["spec"]["containers"]


def infsvc_spec(extra: dict):
    raw = {"model": {"modelVersion": "fraud-1"}, "predictionLogging": {},
           "monitoring": {"drift": {"window": "1h"}}, **extra}
    if env := extra.get("env"):
        raw = {k: v for k, v in raw.items() if k != "env"} | {"runtime": {"env": env}}
    return parse_spec("InferenceService", raw)


def server_containers(extra: dict, default: str | None) -> list[dict]:
    serving = Serving(image="ferry:1", s3_endpoint=ENDPOINT, object_store_secret=default)
    model = ServedModel(model_version="fraud-1", mlflow_version="1", uri="models:/fraud/1")
    deployment = build_deployment(owner("InferenceService"), infsvc_spec(extra), model, 1,
                                  "stable", serving)
    return deployment["spec"]["template"]["spec"]["containers"]


def drift_containers(extra: dict, default: str | None) -> list[dict]:
    """As the controller builds it: the service's spec, its runtime ``AWS_*`` env, the default."""
    spec = infsvc_spec(extra)
    objects = build_drift_monitor(owner("InferenceService"), spec, "ferry:1", "s3://b/logs",
                                  "s3://b/reports", "s3://b/features/run-1/",
                                  monitor_env(spec, ENDPOINT), default)
    (cron,) = [o for o in objects if o["kind"] == "CronJob"]
    return cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]


PODS = pytest.mark.parametrize("containers", [
    feature_containers, sql_feature_containers, trainer_containers, server_containers,
    drift_containers], ids=["features", "features-sql", "trainer", "server", "drift-monitor"])


@PODS
def test_the_spec_secret_reaches_every_container_and_wins_over_the_default(containers):
    for container in containers({"objectStore": TEAM}, "ferry-s3"):
        assert container["envFrom"] == SPEC_SECRET, container["name"]


@PODS
def test_without_a_spec_reference_the_operator_default_is_loaded_optionally(containers):
    for container in containers({}, "ferry-s3"):
        assert container["envFrom"] == DEFAULT_SECRET, container["name"]


@PODS
def test_neither_a_reference_nor_a_default_loads_no_secret(containers):
    for container in containers({}, None):
        assert container.get("envFrom", []) == [], container["name"]


@pytest.mark.parametrize("containers", [
    feature_containers, trainer_containers, server_containers, drift_containers],
    ids=["features", "trainer", "server", "drift-monitor"])
def test_explicit_env_entries_stay_and_so_win_over_the_secret(containers):
    """Kubernetes gives ``env`` precedence over ``envFrom``: the entry must reach the container."""
    found = containers({"objectStore": TEAM, "env": [REGION]}, "ferry-s3")
    user = [c for c in found if c["name"] != "validate"]  # the validate step runs Ferry's code
    for container in user:
        assert container["envFrom"] == SPEC_SECRET
        assert [e for e in container["env"] if e["name"] == REGION["name"]] == [REGION]


def test_the_drift_monitor_uses_the_inferenceservices_reference_like_its_servers():
    spec = {"objectStore": TEAM}
    assert drift_containers(dict(spec), "ferry-s3")[0]["envFrom"] \
        == server_containers(dict(spec), "ferry-s3")[0]["envFrom"] == SPEC_SECRET


def test_the_retraining_run_inherits_the_services_reference_unless_its_template_names_one():
    report = {"verdict": "Drifted", "reportUri": "s3://b/r/job-1/drift.json"}
    template = {"image": "trainer:1"}
    infsvc = owner("InferenceService", {"model": {"modelName": "fraud"}, "objectStore": TEAM})
    retrain = Retrain.model_validate({"template": template})
    run = decide_retrain(infsvc, report, retrain, None, [], datetime.now(UTC)).run
    assert run["spec"]["objectStore"] == TEAM
    assert retrain.template == template  # the template itself is left as written

    own = retrain.model_copy(update={"template": {**template,
                                                  "objectStore": {"secretRef": {"name": "own"}}}})
    run = decide_retrain(infsvc, report, own, None, [], datetime.now(UTC)).run
    assert run["spec"]["objectStore"] == {"secretRef": {"name": "own"}}

    bare = owner("InferenceService", {"model": {"modelName": "fraud"}})
    assert "objectStore" not in decide_retrain(bare, report, retrain, None, [],
                                               datetime.now(UTC)).run["spec"]


def test_s3_credentials_is_a_deprecated_alias_of_object_store():
    for container in sql_feature_containers({"s3Credentials": {"name": "old-s3"}}, "ferry-s3"):
        assert container["envFrom"] == [{"secretRef": {"name": "old-s3"}}]
    with pytest.raises(ValidationError, match="not both"):
        parse_spec("FeaturePipeline", {"featureSet": "tx", "version": "v1", "objectStore": TEAM,
                                       "s3Credentials": {"name": "old-s3"},
                                       "transform": {"container": {"image": "etl:1"}}})


def test_training_credentials_load_after_the_object_store_so_their_keys_win():
    (container,) = trainer_containers({
        "objectStore": TEAM, "mlflow": {"credentials": {"name": "mlflow-token"}},
        "checkpoint": {"uri": "s3://ckpt/x/", "credentials": {"name": "team-s3"}}}, "ferry-s3")
    assert container["envFrom"] == [{"secretRef": {"name": "team-s3"}},
                                    {"secretRef": {"name": "mlflow-token"}}]
    (container,) = trainer_containers({"mlflow": {"credentials": {"name": "mlflow-token"}}}, None)
    assert container["envFrom"] == [{"secretRef": {"name": "mlflow-token"}}]


def test_the_default_secret_is_an_operator_setting():
    config = OperatorConfig.from_env({"FERRY_DEFAULT_OBJECT_STORE_SECRET": "ferry-s3"})
    assert config.default_object_store_secret == "ferry-s3"
    assert OperatorConfig.from_env({}).default_object_store_secret is None
    with pytest.raises(ValidationError):
        OperatorConfig.from_env({"FERRY_DEFAULT_OBJECT_STORE_SECRET": "Not_A_Name"})


def test_examples_name_the_secret_once_instead_of_aws_env_entries():
    def aws_env(spec: dict) -> list[str]:
        env = spec.get("env", []) + spec.get("runtime", {}).get("env", [])
        return [e["name"] for e in env if e["name"].startswith("AWS_")]

    starting = 0
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            if obj["kind"] == "ModelVersion":  # starts no pods
                continue
            starting += 1
            spec = obj["spec"]
            assert spec["objectStore"] == {"secretRef": {"name": "ferry-s3"}}, path.name
            assert not aws_env(spec) and "s3Credentials" not in spec, path.name
            retrain = ((spec.get("monitoring") or {}).get("drift") or {}).get("onDrift")
            if retrain:
                assert not aws_env(retrain["retrain"]["template"]), path.name
    assert starting == 7
