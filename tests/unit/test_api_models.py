from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from ferry.api import KINDS, kind_by_plural, parse_spec
from ferry.api.common import duration_seconds

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"
BAD = Path(__file__).resolve().parents[1] / "integration" / "bad_manifests"


def examples():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        yield from (d for d in yaml.safe_load_all(path.read_text()) if d)


@pytest.mark.parametrize("obj", list(examples()), ids=lambda o: o["kind"])
def test_examples_validate(obj):
    parse_spec(obj["kind"], obj["spec"])


@pytest.mark.parametrize("path", sorted(BAD.glob("*.yaml")), ids=lambda p: p.stem)
def test_pydantic_rejects_what_the_apiserver_rejects(path):
    """Models and CRDs agree: every bad manifest also fails model validation (except the
    immutability cases, which need the old object and only the apiserver can check)."""
    *_, bad = list(yaml.safe_load_all(path.read_text()))
    if "immutable" in path.name:
        parse_spec(bad["kind"], bad["spec"])
        return
    with pytest.raises(ValidationError):
        parse_spec(bad["kind"], bad["spec"])


def test_error_names_the_field_by_its_json_name():
    with pytest.raises(ValidationError) as error:
        parse_spec("TrainingRun", {"image": "x", "nonRetryableExitCodes": [300]})
    assert error.value.errors()[0]["loc"] == ("nonRetryableExitCodes", 0)


def test_unknown_fields_are_rejected():
    with pytest.raises(ValidationError, match="imagee"):
        parse_spec("TrainingRun", {"image": "x", "imagee": "y"})


def test_defaults():
    run = parse_spec("TrainingRun", {"image": "x"})
    assert run.workers == 1 and run.resources.gpus == 0 and run.backoff_limit == 3
    service = parse_spec("InferenceService", {"model": {"modelVersion": "fraud-7"}})
    assert service.runtime.port == 8080 and service.replicas == 1
    version = parse_spec("ModelVersion", {"modelName": "m", "source": "runs:/1/model"})
    assert version.deletion_policy == "Retain" and version.approval.required is False


def test_experiment_defaults():
    service = parse_spec("InferenceService", {"model": {"modelVersion": "shop-1"}, "strategy": {
        "experiment": {"variants": [{"name": "a", "modelVersion": "shop-1", "weight": 90},
                                    {"name": "b", "modelVersion": "shop-2", "weight": 10}],
                       "assignment": {"cookie": "uid"}, "minimumDetectableEffect": 0.01}}})
    experiment = service.strategy.experiment
    assert (experiment.override_header, experiment.alpha, experiment.srm_alpha, experiment.test,
            experiment.auto_promote) == ("ferry-variant", 0.05, 0.001, "sequential", False)
    assert (experiment.metric.name, experiment.metric.aggregation) == ("label", "mean")
    assert experiment.guardrails.templates == ["errorRate", "latencyP99"]


def test_cron_schedule_is_checked_beyond_the_schema():
    spec = {"featureSet": "t", "version": "v1",
            "transform": {"container": {"image": "i"}}, "schedule": "every hour"}
    with pytest.raises(ValidationError, match="cron"):
        parse_spec("FeaturePipeline", spec)
    parse_spec("FeaturePipeline", spec | {"schedule": "@hourly"})
    parse_spec("FeaturePipeline", spec | {"schedule": "*/5 * * * *"})


def test_quantities_accept_numbers_and_suffixes_only():
    parse_spec("TrainingRun", {"image": "x", "resources": {"cpu": 2, "memory": "16Gi"}})
    parse_spec("TrainingRun", {"image": "x", "resources": {"cpu": "500m"}})
    with pytest.raises(ValidationError, match="quantity"):
        parse_spec("TrainingRun", {"image": "x", "resources": {"memory": "lots"}})


def test_register_field_keeps_its_json_name():
    run = parse_spec("TrainingRun", {"image": "x", "register": {"modelName": "fraud"}})
    assert run.registration.model_name == "fraud"
    assert run.model_dump(by_alias=True, exclude_none=True)["register"]["modelName"] == "fraud"


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1h30m", 5400),
                                          ("7d", 604800), ("250ms", 0.25)])
def test_duration_seconds(text, seconds):
    assert duration_seconds(text) == seconds


def test_duration_seconds_rejects_garbage():
    with pytest.raises(ValueError):
        duration_seconds("5 minutes")


def test_kind_lookup():
    assert kind_by_plural("trainingruns").kind == "TrainingRun"
    assert KINDS["TrainingRun"].summary_condition == "Succeeded"
    assert KINDS["InferenceService"].summary_condition == "Ready"
    with pytest.raises(KeyError):
        kind_by_plural("pods")


@pytest.mark.parametrize("value_from, field", [
    ({"secretKeyRef": {"name": 7, "key": "k"}}, "name"),
    ({"secretKeyRef": [{"name": "s", "key": "k"}]}, "secretKeyRef"),
    ({"secretKeyRef": {"name": "", "key": "k"}}, "name"),
    ({"secretKeyRef": {"name": "s"}}, "key"),
    ({"secretKeyRef": {"name": "s", "key": "k", "extra": 1}}, "extra"),
    ({}, "exactly one of secretKeyRef"),
])
def test_env_value_from_is_the_core_v1_shape(value_from, field):
    """What the fuzzing found passing the CRD and failing later on the Job is refused up front."""
    with pytest.raises(ValueError, match=field):
        parse_spec("TrainingRun", {"image": "trainer:1", "env": [{"name": "A", "valueFrom": value_from}]})


@pytest.mark.parametrize("uri", ["./mlruns", "/var/lib/mlflow", "", "mlflow:5000", "http://", "http://a b"])
def test_a_tracking_uri_is_a_server_not_a_path_on_the_operators_disk(uri):
    with pytest.raises(ValidationError, match="mlflow.trackingUri"):
        parse_spec("TrainingRun", {"image": "trainer:1", "mlflow": {"trackingUri": uri}})
    parse_spec("TrainingRun", {"image": "trainer:1", "mlflow": {"trackingUri": "https://mlflow.example/x"}})
