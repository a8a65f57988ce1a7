from datetime import datetime, timedelta, UTC

from ferry.api import parse_spec
from ferry.reconcilers.featurepipeline import Observed, decide, job_state
from ferry.status import find_condition

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SPEC = parse_spec("FeaturePipeline", {
    "featureSet": "t", "version": "v1", "freshness": {"maxAge": "1h"},
    "transform": {"container": {"image": "i"}}})


def job(name, state, created="2026-11-22T11:00:00Z"):
    conditions = {"Succeeded": [{"type": "Complete", "status": "True"}],
                  "Failed": [{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}],
                  "Running": []}[state]
    return {"metadata": {"name": name, "creationTimestamp": created},
            "status": {"conditions": conditions, "startTime": "2026-11-22T11:00:00Z",
                       "completionTime": "2026-11-22T11:00:30Z" if state != "Running" else None}}


def result(run_id, passed=True, schema_changed=False):
    return {"runId": run_id, "rows": 10, "outputUri": f"s3://b/v/{run_id}/", "passed": passed,
            "schemaChanged": schema_changed, "schema": {"columns": [], "hash": "h"},
            "expectations": [{"expectation": "x: not null", "passed": passed,
                              "observed": "0 nulls" if passed else "2 nulls"}]}


def latest(run_id, age=timedelta(minutes=10)):
    return {"runId": run_id, "uri": f"s3://b/v/{run_id}/", "rows": 10, "schemaHash": "h",
            "time": (NOW - age).strftime("%Y-%m-%dT%H:%M:%SZ")}


def run(observed, status=None):
    return decide(SPEC, status or {}, 1, observed)


def cond(fields, type_):
    return find_condition(fields["conditions"], type_)


def test_job_state():
    assert [job_state(job("a", s)) for s in ("Succeeded", "Failed", "Running")] == [
        "Succeeded", "Failed", "Running"]


def test_nothing_run_yet_is_pending_and_not_ready():
    fields, _, requeue = run(Observed([], None, {}, NOW))
    assert fields["phase"] == "Pending"
    assert cond(fields, "Ready")["reason"] == "NoOutput"
    assert cond(fields, "Validated")["status"] == "Unknown"
    assert requeue is None


def test_running_job_polls_and_reports_running():
    fields, _, requeue = run(Observed([job("r1", "Running")], None, {}, NOW))
    assert fields["phase"] == "Running" and fields["lastRun"]["state"] == "Running"
    assert requeue == 3.0


def test_published_run_is_ready_and_fresh_with_requeue_before_it_goes_stale():
    fields, events, requeue = run(Observed([job("r1", "Succeeded")], latest("r1"),
                                           {"r1": result("r1")}, NOW))
    assert fields["phase"] == "Ready"
    assert fields["latestOutputUri"] == "s3://b/v/r1/"
    assert fields["lastSuccessfulRun"]["rows"] == 10
    assert cond(fields, "Validated")["reason"] == "ExpectationsPassed"
    assert cond(fields, "Fresh")["status"] == "True"
    assert 50 * 60 <= requeue <= 50 * 60 + 1
    assert {e.reason for e in events} == {"ExpectationsPassed", "WithinMaxAge", "Published"}


def test_failed_expectations_keep_the_previous_output_and_list_the_checks():
    jobs = [job("r1", "Succeeded", "2026-11-22T10:00:00Z"), job("r2", "Failed")]
    fields, events, _ = run(Observed(jobs, latest("r1"), {"r1": result("r1"),
                                                          "r2": result("r2", passed=False)}, NOW))
    validated = cond(fields, "Validated")
    assert validated["reason"] == "ExpectationsFailed" and "x: not null (2 nulls)" in validated["message"]
    assert fields["latestOutputUri"] == "s3://b/v/r1/"
    assert fields["lastRun"]["runId"] == "r2" and fields["lastRun"]["state"] == "Failed"
    assert fields["expectationResults"][0]["passed"] is False
    assert any(e.type == "Warning" and e.reason == "ExpectationsFailed" for e in events)


def test_schema_change_is_reported():
    fields, _, _ = run(Observed([job("r2", "Failed")], None,
                                {"r2": result("r2", passed=False, schema_changed=True)}, NOW))
    assert cond(fields, "Validated")["reason"] == "SchemaChanged"
    assert fields["phase"] == "Failed"


def test_a_crashed_run_without_result_is_run_failed():
    fields, _, _ = run(Observed([job("r3", "Failed")], None, {}, NOW))
    assert cond(fields, "Validated")["reason"] == "RunFailed"
    assert "BackoffLimitExceeded" in cond(fields, "Validated")["message"]


def test_a_run_refused_by_s3_says_so_instead_of_run_failed():
    refused = ("ObjectStoreAccessDenied", "S3 refused the credentials (InvalidAccessKeyId)")
    fields, events, _ = run(Observed([job("r3", "Failed")], None, {}, NOW, reported={"r3": refused}))
    validated = cond(fields, "Validated")
    assert (validated["status"], validated["reason"]) == ("False", "ObjectStoreAccessDenied")
    assert "r3" in validated["message"] and "InvalidAccessKeyId" in validated["message"]
    assert any(e.reason == "ObjectStoreAccessDenied" for e in events)
    assert fields["phase"] == "Failed"


def test_old_output_is_stale():
    fields, _, requeue = run(Observed([job("r1", "Succeeded")], latest("r1", timedelta(hours=2)),
                                      {"r1": result("r1")}, NOW))
    assert cond(fields, "Fresh")["reason"] == "Stale"
    assert cond(fields, "Ready")["status"] == "False"
    assert fields["phase"] == "Stale" and requeue is None


def test_steady_state_posts_no_events():
    observed = Observed([job("r1", "Succeeded")], latest("r1"), {"r1": result("r1")}, NOW)
    first, _, _ = run(observed)
    _, events, _ = run(observed, status=first)
    assert events == []


def test_backfill_plan_never_exceeds_parallelism():
    from ferry.reconcilers.featurepipeline import backfill_plan

    desired = [{"metadata": {"name": f"bf-{i}"}} for i in range(5)]
    create, progress = backfill_plan(desired, [], 2)
    assert [j["metadata"]["name"] for j in create] == ["bf-0", "bf-1"]
    assert progress == {"total": 5, "succeeded": 0, "failed": 0, "running": 2, "pending": 3}
    existing = [job("bf-0", "Succeeded"), job("bf-1", "Running")]
    create, progress = backfill_plan(desired, existing, 2)
    assert [j["metadata"]["name"] for j in create] == ["bf-2"]
    assert progress["succeeded"] == 1 and progress["pending"] == 2
    existing = [job("bf-0", "Running"), job("bf-1", "Running")]
    assert backfill_plan(desired, existing, 2)[0] == []
    finished = [job(f"bf-{i}", "Succeeded") for i in range(4)] + [job("bf-4", "Failed")]
    create, progress = backfill_plan(desired, finished, 2)
    assert create == [] and progress == {"total": 5, "succeeded": 4, "failed": 1, "running": 0,
                                         "pending": 0}


def test_sql_variables_reach_the_query():
    import pyarrow as pa

    from ferry.features.engine import run_sql

    out = run_sql("select getvariable('ferry_interval_start') as s, count(*) as n from t",
                  {"t": pa.table({"a": [1, 2]})}, {"ferry_interval_start": "2026-01-01"})
    assert out.to_pydict() == {"s": ["2026-01-01"], "n": [2]}
