import json

import pytest

from ferry.api import parse_spec
from ferry.builders.featurepipeline import FeatureSettings, build_child, run_once_job_name
from ferry.features import layout
from ferry.features.config import JobConfig
from ferry import podexit
from ferry.podenv import MissingEnv
from support.podenv import kubelet_env

SETTINGS = FeatureSettings(image="ferry:test", bucket="ferry", prefix="features",
                           s3_endpoint="http://127.0.0.1:9000")
OWNER = {"apiVersion": "ferry.dev/v1alpha1", "kind": "FeaturePipeline",
         "metadata": {"name": "transactions-v2", "namespace": "ml", "uid": "uid-1"}}
SQL = {"featureSet": "transactions", "version": "v2",
       "transform": {"sql": {"query": "select 1", "sources": [{"name": "raw",
                                                                "uri": "s3://raw/x.parquet"}]}},
       "s3Credentials": {"name": "s3-creds"}}


def spec(**extra):
    return parse_spec("FeaturePipeline", SQL | extra)


def env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_run_once_pipeline_is_a_job_named_by_its_spec():
    job = build_child(OWNER, spec(), SETTINGS)
    assert job["kind"] == "Job"
    assert job["metadata"]["name"] == run_once_job_name("transactions-v2", spec())
    assert run_once_job_name("transactions-v2", spec()) != run_once_job_name(
        "transactions-v2", spec(expectations=[{"rowCount": {"min": 1}}]))
    assert job["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert job["metadata"]["labels"]["ferry.dev/featurepipeline"] == "transactions-v2"


def test_job_fails_at_once_on_rejected_output_or_refused_credentials_and_ignores_disruptions():
    job_spec = build_child(OWNER, spec(), SETTINGS)["spec"]
    rules = job_spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "FailJob", "onExitCodes": {
        "containerName": "features", "operator": "In", "values": [3, podexit.EXIT_CODE]}}
    assert rules[1]["onPodConditions"] == [{"type": "DisruptionTarget"}]
    assert job_spec["template"]["spec"]["restartPolicy"] == "Never"


def test_sql_pod_runs_ferry_features_with_documented_env_and_secret():
    pod = build_child(OWNER, spec(), SETTINGS)["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["command"] == ["ferry", "features", "run"]
    assert container["image"] == "ferry:test"
    values = env(container)
    assert values["FERRY_VERSION_URI"] == "s3://ferry/features/transactions/v2/"
    assert values["FERRY_OUTPUT_URI"] == "$(FERRY_VERSION_URI)$(FERRY_RUN_ID)/"
    assert values["FERRY_RUN_ID"]["fieldRef"]["fieldPath"].endswith("['batch.kubernetes.io/job-name']")
    assert json.loads(values["FERRY_PIPELINE"])["featureSet"] == "transactions"
    assert values["AWS_ENDPOINT_URL_S3"] == "http://127.0.0.1:9000"
    assert container["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_container_transform_runs_first_then_ferry_validates():
    custom = parse_spec("FeaturePipeline", {
        "featureSet": "t", "version": "v1",
        "transform": {"container": {"image": "mine:1", "command": ["compute"],
                                    "env": [{"name": "DEPTH", "value": "3"}],
                                    "resources": {"cpu": "2"}}}})
    job = build_child(OWNER, custom, SETTINGS)["spec"]
    pod = job["template"]["spec"]
    # The user's exit codes keep their meaning: only Ferry's container fails the Job at once.
    assert job["podFailurePolicy"]["rules"][0]["onExitCodes"]["containerName"] == "validate"
    transform = pod["initContainers"][0]
    assert transform["image"] == "mine:1" and transform["command"] == ["compute"]
    assert env(transform)["DEPTH"] == "3" and "FERRY_OUTPUT_URI" in env(transform)
    assert transform["resources"] == {"requests": {"cpu": "2"}, "limits": {"cpu": "2"}}
    assert pod["containers"][0]["command"] == ["ferry", "features", "validate"]


def test_scheduled_pipeline_is_a_cronjob_with_schedule_zone_and_policy():
    cron = build_child(OWNER, spec(schedule="0 * * * *", timeZone="Europe/Berlin",
                                   concurrencyPolicy="Replace", suspend=True), SETTINGS)
    assert cron["kind"] == "CronJob" and cron["metadata"]["name"] == "transactions-v2"
    assert cron["spec"]["schedule"] == "0 * * * *"
    assert cron["spec"]["timeZone"] == "Europe/Berlin"
    assert cron["spec"]["concurrencyPolicy"] == "Replace"
    assert cron["spec"]["suspend"] is True
    labels = cron["spec"]["jobTemplate"]["metadata"]["labels"]
    assert labels["ferry.dev/owner-uid"] == "uid-1"


def test_output_overrides_bucket_and_prefix():
    job = build_child(OWNER, spec(output={"bucket": "lake", "prefix": ""}), SETTINGS)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert env(container)["FERRY_VERSION_URI"] == "s3://lake/transactions/v2/"


def test_backfill_intervals_and_jobs():
    from ferry.builders.featurepipeline import backfill_intervals, backfill_jobs

    backfilled = spec(backfill={"from": "2026-01-01T00:00:00Z", "to": "2026-01-03T12:00:00Z",
                                "interval": "1d", "parallelism": 2})
    assert backfill_intervals(backfilled) == [
        ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"),
        ("2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z"),
        ("2026-01-03T00:00:00Z", "2026-01-03T12:00:00Z")]
    jobs = backfill_jobs(OWNER, backfilled, SETTINGS)
    assert [j["metadata"]["name"].rsplit("-", 1)[1] for j in jobs] == ["0", "1", "2"]
    assert len({j["metadata"]["name"] for j in jobs}) == 3
    first = env(jobs[0]["spec"]["template"]["spec"]["containers"][0])
    assert first["FERRY_INTERVAL_START"] == "2026-01-01T00:00:00Z"
    assert first["FERRY_INTERVAL_END"] == "2026-01-02T00:00:00Z"
    assert "ferry.dev/backfill" in jobs[0]["metadata"]["labels"]


JOB = "transactions-v2-1a2b3c4d"
POD = {"metadata.labels['batch.kubernetes.io/job-name']": JOB}


def test_builder_env_is_the_job_config():
    container = build_child(OWNER, spec(), SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert container["env"] == JobConfig(
        pipeline=json.loads(env(container)["FERRY_PIPELINE"]),
        version_uri="s3://ferry/features/transactions/v2/",
        s3_endpoint="http://127.0.0.1:9000").to_env()
    assert "FERRY_S3_ENDPOINT" not in env(container), "nothing in the pod reads it"


def test_the_job_reads_back_what_the_builder_wrote_and_its_output_is_the_run_folder():
    from ferry.builders.featurepipeline import backfill_jobs

    backfilled = spec(backfill={"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z",
                                "interval": "1d"})
    container = backfill_jobs(OWNER, backfilled, SETTINGS)[0]["spec"]["template"]["spec"][
        "containers"][0]
    seen_env = kubelet_env(container["env"], POD)
    seen = JobConfig.from_env(seen_env)
    assert seen.run_id == JOB and seen.s3_endpoint == "http://127.0.0.1:9000"
    assert seen.pipeline == backfilled.model_dump(by_alias=True, exclude_none=True)
    assert seen_env["FERRY_OUTPUT_URI"] == layout.run_uri(seen.version_uri, JOB)
    assert (seen_env["FERRY_FEATURE_SET"], seen_env["FERRY_FEATURE_VERSION"]) == (
        "transactions", "v2")
    assert seen.sql_variables() == {"ferry_interval_start": "2026-01-01T00:00:00Z",
                                    "ferry_interval_end": "2026-01-02T00:00:00Z"}


def test_job_config_round_trips_and_names_what_is_missing():
    config = JobConfig(pipeline=SQL, version_uri="s3://b/t/v2/", run_id="r1", s3_endpoint="http://s3",
                       interval_start="2026-01-01T00:00:00Z", interval_end="2026-01-02T00:00:00Z")
    assert JobConfig.from_env(kubelet_env(config.to_env(), {})) == config
    plain = JobConfig(pipeline=SQL, version_uri="s3://b/t/v2/", run_id="r1")
    assert JobConfig.from_env(kubelet_env(plain.to_env(), {})) == plain
    assert plain.sql_variables() == {}
    with pytest.raises(MissingEnv, match="FERRY_RUN_ID"):
        JobConfig.from_env({"FERRY_PIPELINE": "{}", "FERRY_VERSION_URI": "s3://b/t/v2/"})
