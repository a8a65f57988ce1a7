"""FeaturePipeline on the real control plane: Jobs on the real node, DuckDB, real S3."""

from __future__ import annotations

import io
import json

import pyarrow.parquet as pq
import pytest

from ferry_dev.services import BUCKET
from ferry.status import find_condition
from support.cluster import IMAGE
from support.featuredata import ROWS, pipeline, secret, sql_transform, upload_raw_data
from support.metrics import sample_total
from support.objects import apply_manifests
from support.waiting import wait_for



@pytest.fixture
def raw_data(services, namespace):
    return upload_raw_data(services, namespace)


GOOD_EXPECTATIONS = [
    {"column": "amount", "type": "float", "notNull": True, "min": 0},
    {"column": "country", "allowedValues": ["DE", "FR", "NL", "US"]},
    {"rowCount": {"min": ROWS, "max": ROWS}},
]


def get(cluster, namespace, name) -> dict:
    return json.loads(cluster.kubectl("get", "featurepipeline.ferry.dev", name, "-n", namespace,
                                      "-o", "json").stdout)


def condition(obj, type_):
    return find_condition(obj.get("status", {}).get("conditions"), type_) or {}


def latest_pointer(services, namespace) -> dict:
    key = f"features/tx-{namespace}/v1/latest.json"
    return json.loads(services.s3_client().get_object(Bucket=BUCKET, Key=key)["Body"].read())


def test_sql_pipeline_publishes_and_a_bad_run_keeps_latest(cluster, namespace, operator, services,
                                                           raw_data):
    apply_manifests(cluster, secret(namespace, raw_data),
          pipeline(namespace, "tx", transform=sql_transform(namespace),
                   expectations=GOOD_EXPECTATIONS))
    ready = wait_for(lambda: (o := get(cluster, namespace, "tx")) and
                     condition(o, "Ready").get("status") == "True"
                     and o["status"]["phase"] == "Ready" and o,
                     timeout=120, message="pipeline Ready and its Job finished")
    status = ready["status"]
    assert status["lastSuccessfulRun"]["rows"] == ROWS
    assert status["phase"] == "Ready"
    columns = [c["name"] for c in status["schema"]["columns"]]
    assert columns == ["customer_id", "amount", "log_amount", "country", "segment"]
    pointer = latest_pointer(services, namespace)
    assert status["latestOutputUri"] == pointer["uri"]
    assert pointer["uri"].startswith(f"s3://{BUCKET}/features/tx-{namespace}/v1/")
    bucket_key = pointer["uri"].removeprefix(f"s3://{BUCKET}/") + "part-0.parquet"
    table = pq.read_table(io.BytesIO(services.s3_client().get_object(
        Bucket=BUCKET, Key=bucket_key)["Body"].read()))
    assert table.num_rows == ROWS
    assert set(table.column("segment").to_pylist()) == {"gold", "basic"}
    assert all(r["passed"] for r in status["expectationResults"])

    # A run whose output violates an expectation: fails with the checks, latest does not move.
    bad = pipeline(namespace, "tx", transform=sql_transform(namespace),
                   expectations=[*GOOD_EXPECTATIONS, {"column": "amount", "max": 10}])
    apply_manifests(cluster, bad)
    failed = wait_for(lambda: (o := get(cluster, namespace, "tx")) and
                      condition(o, "Validated").get("reason") == "ExpectationsFailed" and o,
                      timeout=120, message="Validated=False/ExpectationsFailed")
    assert "amount: max 10.0" in condition(failed, "Validated")["message"]
    assert any(not r["passed"] and r["expectation"] == "amount: max 10.0"
               for r in failed["status"]["expectationResults"]), json.dumps(failed["status"])
    assert latest_pointer(services, namespace)["runId"] == pointer["runId"]
    assert failed["status"]["latestOutputUri"] == pointer["uri"]
    jobs = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(jobs) == 2
    events = cluster.kubectl("get", "events", "-n", namespace,
                             "--field-selector", "reason=ExpectationsFailed").stdout
    assert "ExpectationsFailed" in events


def test_a_wrong_secret_key_is_reported_as_access_denied_and_not_retried(
        cluster, namespace, operator, raw_data):
    """S3 refuses the pipeline's credentials: the run fails at once (no retry fixes a wrong
    Secret) and Validated says S3 refused them, with a Warning Event."""
    wrong = raw_data | {"AWS_SECRET_ACCESS_KEY": "not-the-secret-key"}
    apply_manifests(cluster, secret(namespace, wrong),
                    pipeline(namespace, "tx", transform=sql_transform(namespace)))
    refused = wait_for(lambda: (o := get(cluster, namespace, "tx")) and
                       condition(o, "Validated").get("status") == "False" and o,
                       timeout=120, message="Validated=False for the refused run")
    validated = condition(refused, "Validated")
    assert validated["reason"] == "ObjectStoreAccessDenied", validated
    assert "objectStore.secretRef" in validated["message"], validated
    assert refused["status"]["phase"] == "Failed"
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-o", "json").stdout)["items"]
    assert len(pods) == 1, "failed at once, not retried up to the backoff limit"
    events = cluster.kubectl("get", "events", "-n", namespace,
                             "--field-selector", "reason=ObjectStoreAccessDenied").stdout
    assert "ObjectStoreAccessDenied" in events


def test_scheduled_pipeline_creates_a_cronjob(cluster, namespace, operator, raw_data):
    apply_manifests(cluster, secret(namespace, raw_data),
          pipeline(namespace, "hourly", transform=sql_transform(namespace), schedule="0 * * * *",
                   timeZone="Europe/Berlin", concurrencyPolicy="Replace"))
    cron = wait_for(lambda: json.loads(cluster.kubectl(
        "get", "cronjob", "hourly", "-n", namespace, "-o", "json").stdout), timeout=60,
        message="CronJob")
    assert cron["spec"]["schedule"] == "0 * * * *"
    assert cron["spec"]["timeZone"] == "Europe/Berlin"
    assert cron["spec"]["concurrencyPolicy"] == "Replace"
    assert cron["metadata"]["ownerReferences"][0]["kind"] == "FeaturePipeline"
    assert json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)[
        "items"] == []


def test_freshness_flips_when_the_output_ages(cluster, namespace, operator, raw_data):
    apply_manifests(cluster, secret(namespace, raw_data),
          pipeline(namespace, "fresh", transform=sql_transform(namespace),
                   freshness={"maxAge": "15s"}))
    wait_for(lambda: condition(get(cluster, namespace, "fresh"), "Fresh").get("status") == "True",
             timeout=120, message="Fresh=True")
    stale = wait_for(lambda: (o := get(cluster, namespace, "fresh")) and
                     condition(o, "Fresh").get("reason") == "Stale" and o,
                     timeout=60, message="Fresh=False/Stale")
    assert condition(stale, "Ready")["status"] == "False"
    assert stale["status"]["phase"] == "Stale"
    age = sample_total(operator.metrics(), "ferry_feature_output_age_seconds",
                       namespace=namespace, name="fresh")
    assert age > 15


def test_container_transform_gets_env_and_is_validated(cluster, namespace, operator, raw_data):
    code = (
        "import io, os, boto3, pyarrow as pa, pyarrow.parquet as pq\n"
        "out = os.environ['FERRY_OUTPUT_URI']\n"
        "bucket, key = out[5:].split('/', 1)\n"
        "t = pa.table({'user': ['a', 'b', 'c'], 'feature_set': [os.environ['FERRY_FEATURE_SET']] * 3,"
        " 'version': [os.environ['FERRY_FEATURE_VERSION']] * 3})\n"
        "b = io.BytesIO(); pq.write_table(t, b)\n"
        "boto3.client('s3').put_object(Bucket=bucket, Key=key + 'part-0.parquet', Body=b.getvalue())\n")
    apply_manifests(cluster, secret(namespace, raw_data),
          pipeline(namespace, "custom",
                   transform={"container": {"image": IMAGE, "command": ["python", "-c", code]}},
                   expectations=[{"column": "user", "unique": True, "notNull": True},
                                 {"rowCount": {"min": 3}}]))
    ready = wait_for(lambda: (o := get(cluster, namespace, "custom")) and
                     condition(o, "Ready").get("status") == "True" and o,
                     timeout=120, message="container pipeline Ready")
    assert ready["status"]["lastSuccessfulRun"]["rows"] == 3
    columns = {c["name"] for c in ready["status"]["schema"]["columns"]}
    assert columns == {"user", "feature_set", "version"}


def test_versions_run_side_by_side_and_a_served_version_cannot_be_deleted(
        cluster, namespace, operator, raw_data):
    v1 = pipeline(namespace, "tx-v1", transform=sql_transform(namespace))
    v2 = pipeline(namespace, "tx-v2", transform=sql_transform(namespace))
    v2["spec"]["version"] = "v2"
    model = {"apiVersion": "ferry.dev/v1alpha1", "kind": "ModelVersion",
             "metadata": {"name": "fraud-6", "namespace": namespace},
             "spec": {"modelName": "fraud", "source": "runs:/abc/model", "features": "tx-v1"}}
    service = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
               "metadata": {"name": "fraud", "namespace": namespace},
               "spec": {"model": {"modelVersion": "fraud-6"}}}
    apply_manifests(cluster, secret(namespace, raw_data), v1, v2, model, service)
    for name in ("tx-v1", "tx-v2"):
        wait_for(lambda n=name: condition(get(cluster, namespace, n), "Ready").get("status")
                 == "True", timeout=120, message=f"{name} Ready")
    in_use = wait_for(lambda: (o := get(cluster, namespace, "tx-v1")) and
                      condition(o, "InUse").get("status") == "True" and o,
                      timeout=60, message="tx-v1 InUse")
    assert in_use["status"]["usedBy"] == ["InferenceService/fraud (ModelVersion/fraud-6)"]
    assert condition(get(cluster, namespace, "tx-v2"), "InUse")["status"] == "False"

    cluster.kubectl("delete", "featurepipeline.ferry.dev", "tx-v1", "-n", namespace,
                    "--wait=false")
    held = wait_for(lambda: (o := get(cluster, namespace, "tx-v1")) and
                    condition(o, "InUse").get("reason") == "DeletionBlocked" and o,
                    timeout=60, message="deletion held with InUse/DeletionBlocked")
    assert held["metadata"]["deletionTimestamp"]
    assert "InferenceService/fraud" in condition(held, "InUse")["message"]
    assert "DeletionBlocked" in cluster.kubectl(
        "get", "events", "-n", namespace, "--field-selector", "reason=DeletionBlocked").stdout

    cluster.kubectl("delete", "inferenceservice.ferry.dev", "fraud", "-n", namespace)
    wait_for(lambda: cluster.kubectl("get", "featurepipeline.ferry.dev", "tx-v1", "-n", namespace,
                                     check=False).returncode != 0,
             timeout=60, message="tx-v1 deleted once unused")
    assert condition(get(cluster, namespace, "tx-v2"), "Ready")["status"] == "True"


def test_backfill_runs_every_interval_with_bounded_parallelism(cluster, namespace, operator,
                                                               raw_data):
    transform = sql_transform(namespace)
    transform["sql"]["query"] = ("select cast(getvariable('ferry_interval_start') as varchar) "
                                 "as interval_start, count(*) as n from tx")
    apply_manifests(cluster, secret(namespace, raw_data),
          pipeline(namespace, "bf", transform=transform, backfill={
              "from": "2026-01-01T00:00:00Z", "to": "2026-01-06T00:00:00Z", "interval": "1d",
              "parallelism": 2}))
    done = wait_for(lambda: (o := get(cluster, namespace, "bf")) and
                    o.get("status", {}).get("backfill", {}).get("succeeded") == 5 and o,
                    timeout=180, message="5 backfill intervals succeeded")
    assert done["status"]["backfill"] == {"total": 5, "succeeded": 5, "failed": 0, "running": 0,
                                          "pending": 0}
    jobs = [j for j in json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o",
                                                  "json").stdout)["items"]
            if "ferry.dev/backfill" in j["metadata"]["labels"]]
    jobs.sort(key=lambda j: int(j["metadata"]["name"].rsplit("-", 1)[1]))
    assert len(jobs) == 5
    all_jobs = json.loads(cluster.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout)
    assert len(all_jobs["items"]) == 5, "a run-once pipeline with a backfill runs only the backfill"
    # Job k is only created after at least k-1 earlier ones have completed (parallelism 2).
    for k, job in enumerate(jobs):
        created = job["metadata"]["creationTimestamp"]
        completed_before = sum(1 for other in jobs[:k]
                               if other["status"]["completionTime"] <= created)
        assert completed_before >= k - 1, (k, created)
    intervals = set()
    for job in jobs:
        env = {e["name"]: e.get("value") for e in
               job["spec"]["template"]["spec"]["containers"][0]["env"]}
        intervals.add(env["FERRY_INTERVAL_START"])
    assert len(intervals) == 5
