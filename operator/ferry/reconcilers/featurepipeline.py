"""FeaturePipeline status from what was observed: its Jobs and the run results in S3 (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ferry.api.common import duration_seconds
from ferry.api.featurepipeline import FeaturePipelineSpec
from ferry.reconcilers.outcome import Event
from ferry.status import ANNOUNCED, make_condition, set_condition, transitions

POLL_WHILE_RUNNING = 3.0


@dataclass
class Observed:
    jobs: list[dict]              # this pipeline's Jobs (run-once or created by its CronJob)
    latest: dict | None           # latest.json of the version: the published output
    results: dict[str, dict]      # run id -> _result.json of finished runs
    now: datetime
    reported: dict[str, tuple[str, str]] = field(default_factory=dict)
    """run id -> (reason, message) a failed run's pod wrote (``ferry.podexit``)."""


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def job_state(job: dict) -> str:
    for condition in job.get("status", {}).get("conditions", []):
        if condition["status"] == "True" and condition["type"] in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if condition["status"] == "True" and condition["type"] in ("Failed", "FailureTarget"):
            return "Failed"
    return "Running"


def newest(jobs: list[dict]) -> dict | None:
    return max(jobs, key=lambda j: (j["metadata"].get("creationTimestamp", ""),
                                    j["metadata"]["name"]), default=None)


def run_record(job: dict, result: dict | None) -> dict:
    status = job.get("status", {})
    started, finished = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    record = {"state": job_state(job), "runId": job["metadata"]["name"],
              "time": status.get("completionTime") or status.get("startTime")}
    if started and finished:
        record["durationSeconds"] = round((finished - started).total_seconds(), 1)
    if result:
        record["rows"] = result["rows"]
        record["outputUri"] = result["outputUri"]
    return {k: v for k, v in record.items() if v is not None}


def validation(job: dict | None, result: dict | None, generation: int,
               reported: tuple[str, str] | None = None):
    """The Validated condition for the newest finished run; a run that failed for a cause its pod
    named (S3 refusing the credentials) gets that cause as the reason."""
    if job is None:
        return make_condition("Validated", "Unknown", "NoRunYet", "No run has finished yet.",
                              generation)
    if result is None and reported is not None:
        reason, message = reported
        return make_condition("Validated", False, reason,
                              f"Run {job['metadata']['name']} failed: {message}", generation)
    if result is None:
        failure = next((c.get("message", "") for c in job.get("status", {}).get("conditions", [])
                        if c["type"] == "Failed"), "")
        return make_condition("Validated", False, "RunFailed",
                              f"Run {job['metadata']['name']} failed before validating: {failure}",
                              generation)
    if result["passed"]:
        return make_condition("Validated", True, "ExpectationsPassed",
                              f"Run {result['runId']}: all {len(result['expectations'])} checks "
                              "passed.", generation)
    if result.get("schemaChanged"):
        return make_condition("Validated", False, "SchemaChanged",
                              f"Run {result['runId']} changed the schema of this version; "
                              "publish a new version instead. Output not published.", generation)
    failed = [f"{c['expectation']} ({c['observed']})" for c in result["expectations"]
              if not c["passed"]]
    return make_condition("Validated", False, "ExpectationsFailed",
                          f"Run {result['runId']}: {len(failed)} check(s) failed, output not "
                          f"published: " + "; ".join(failed), generation)


def freshness(spec: FeaturePipelineSpec, latest: dict | None, now: datetime, generation: int):
    """The Fresh condition and seconds until it would flip (None when it cannot)."""
    if spec.freshness is None:
        return None, None
    max_age = duration_seconds(spec.freshness.max_age)
    if latest is None:
        return make_condition("Fresh", False, "NoOutput", "Nothing published yet.",
                              generation), None
    age = (now - parse_time(latest["time"])).total_seconds()
    if age > max_age:
        return make_condition("Fresh", False, "Stale",
                              f"Last good output is {age:.0f}s old (maxAge {spec.freshness.max_age}).",
                              generation), None
    return make_condition("Fresh", True, "WithinMaxAge",
                          f"Last good output is {age:.0f}s old.", generation), max_age - age + 1


def decide(spec: FeaturePipelineSpec, status: dict, generation: int,
           observed: Observed) -> tuple[dict, list[Event], float | None]:
    """Status fields, Events and the requeue delay for one FeaturePipeline."""
    conditions = list(status.get("conditions") or [])
    finished = [j for j in observed.jobs if job_state(j) != "Running"]
    last_finished = newest(finished)
    last_result = observed.results.get(last_finished["metadata"]["name"]) if last_finished else None
    running = any(job_state(j) == "Running" for j in observed.jobs)

    new = {}
    if (last := newest(observed.jobs)) is not None:
        new["lastRun"] = run_record(last, observed.results.get(last["metadata"]["name"]))
    latest = observed.latest
    if latest:
        new["lastSuccessfulRun"] = {"state": "Succeeded", "runId": latest["runId"],
                                    "time": latest["time"], "rows": latest["rows"],
                                    "outputUri": latest["uri"]}
        new["latestOutputUri"] = latest["uri"]
        published = observed.results.get(latest["runId"])
        if published:
            new["schema"] = published["schema"]
    if last_result:
        new["expectationResults"] = [
            {"expectation": c["expectation"], "passed": c["passed"], "observed": c["observed"]}
            for c in last_result["expectations"]]

    cause = observed.reported.get(last_finished["metadata"]["name"]) if last_finished else None
    conditions = set_condition(conditions, validation(last_finished, last_result, generation, cause))
    fresh, stale_in = freshness(spec, latest, observed.now, generation)
    if fresh is not None:
        conditions = set_condition(conditions, fresh)
    if latest and (fresh is None or fresh["status"] == "True"):
        ready = make_condition("Ready", True, "Published", f"Serving {latest['uri']}.", generation)
    elif latest:
        ready = make_condition("Ready", False, "Stale", fresh["message"], generation)
    else:
        ready = make_condition("Ready", False, "NoOutput",
                               "Waiting for the first validated run.", generation)
    conditions = set_condition(conditions, ready)
    new["conditions"] = conditions

    if running:
        new["phase"] = "Running"
    elif latest:
        new["phase"] = "Ready" if ready["status"] == "True" else "Stale"
    elif last_finished is not None:
        new["phase"] = "Failed"
    else:
        new["phase"] = "Pending"

    return new, transitions(status.get("conditions"), conditions, ANNOUNCED["FeaturePipeline"]), \
        POLL_WHILE_RUNNING if running else stale_in




def backfill_plan(desired: list[dict], existing: list[dict], parallelism: int) -> tuple[list[dict], dict]:
    """The backfill Jobs to create now (never more than ``parallelism`` running) and progress."""
    states = {j["metadata"]["name"]: job_state(j) for j in existing}
    running = sum(1 for job in desired if states.get(job["metadata"]["name"]) == "Running")
    missing = [job for job in desired if job["metadata"]["name"] not in states]
    create = missing[:max(parallelism - running, 0)]
    progress = {
        "total": len(desired),
        "succeeded": sum(1 for s in states.values() if s == "Succeeded"),
        "failed": sum(1 for s in states.values() if s == "Failed"),
        "running": running + len(create),
        "pending": len(missing) - len(create),
    }
    return create, progress
