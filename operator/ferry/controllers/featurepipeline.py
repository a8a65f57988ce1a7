"""FeaturePipeline controller: read → build → apply → set status.

It converges the one child (a Job when run once, a CronJob when scheduled), removes the other kind
when the schedule is added or dropped, and derives status from the pipeline's Jobs and the run
results the Jobs wrote to S3.
"""

from __future__ import annotations

from datetime import datetime, UTC

import kopf

from ferry import podexit
from ferry.adapters.s3 import ObjectStoreUnavailable
from ferry.api import GROUP, KINDS, VERSION
from ferry.builders.featurepipeline import (
    BACKFILL_LABEL, FeatureSettings, backfill_jobs, build_child, version_uri)
from ferry.builders.labels import child_labels
from ferry.controllers._worker import Context, register
from ferry.features import layout
from ferry.reconcilers.accept import accept
from ferry.reconcilers.features import consumers, published
from ferry.observability.metrics import FRESHNESS
from ferry.reconcilers.featurepipeline import (
    POLL_WHILE_RUNNING, Observed, backfill_plan, decide, job_state, newest, parse_time)
from ferry.reconcilers.outcome import Outcome
from ferry.reconcilers.usage import deletion_blocked_event, in_use_condition, users
from ferry.status import ANNOUNCED, make_condition, set_condition, transitions

INFO = KINDS["FeaturePipeline"]
RESULTS_READ = 3  # newest finished runs whose result is read back each reconcile
DELETION_RETRY = 5.0
STORE_RETRY = 30.0


def settings(ctx: Context) -> FeatureSettings:
    config = ctx.config
    return FeatureSettings(image=config.image, bucket=config.s3_bucket,
                           prefix=config.features_prefix, s3_endpoint=config.s3_endpoint,
                           object_store_secret=config.default_object_store_secret)


async def read_results(ctx: Context, version: str, latest_run: str | None,
                       jobs: list[dict]) -> dict[str, dict]:
    """The ``_result.json`` of the newest finished runs and of the published one."""
    finished = sorted((j for j in jobs if job_state(j) != "Running"),
                      key=lambda j: j["metadata"].get("creationTimestamp", ""), reverse=True)
    run_ids = [j["metadata"]["name"] for j in finished[:RESULTS_READ]]
    if latest_run and latest_run not in run_ids:
        run_ids.append(latest_run)
    results = {}
    for run_id in run_ids:
        result = await ctx.kube.executors.run(
            "s3", ctx.store.get_json, layout.result_uri(layout.run_uri(version, run_id)))
        if result:
            results[run_id] = result
    return results


async def reconcile(ctx: Context, body: kopf.Body) -> Outcome:
    spec, outcome = accept(INFO, body)
    if spec is None:
        return outcome
    namespace, name = body.metadata.namespace, body.metadata.name
    child = build_child(dict(body), spec, settings(ctx))
    # A run-once pipeline with a backfill runs as its backfill Jobs only.
    if child["kind"] == "CronJob" or spec.backfill is None:
        await ctx.kube.apply(child)
    if child["kind"] == "Job":  # no longer scheduled
        await ctx.kube.delete("batch/v1", "CronJob", namespace, name[:52])
    selector = ",".join(f"{k}={v}" for k, v in child_labels(INFO.kind, name).items())
    jobs = await ctx.kube.list("batch/v1", "Job", namespace, selector)
    backfill = None
    if spec.backfill is not None:
        backfill_selector = f"{selector},{BACKFILL_LABEL}"
        create, backfill = backfill_plan(
            backfill_jobs(dict(body), spec, settings(ctx)),
            [j for j in jobs if BACKFILL_LABEL in j["metadata"].get("labels", {})],
            spec.backfill.parallelism)
        for job in create:
            await ctx.kube.apply(job)
        if create:
            jobs = await ctx.kube.list("batch/v1", "Job", namespace, backfill_selector) + [
                j for j in jobs if BACKFILL_LABEL not in j["metadata"].get("labels", {})]
    version = version_uri(spec, settings(ctx))
    try:
        latest = await ctx.kube.executors.run("s3", ctx.store.get_json, layout.latest_uri(version))
        results = await read_results(ctx, version, (latest or {}).get("runId"), jobs)
    except ObjectStoreUnavailable as error:
        return store_unavailable(body, outcome, str(error))
    status = outcome.status
    fields, events, requeue = decide(
        spec, {**dict(body.get("status") or {}), **status}, body.metadata["generation"],
        Observed(jobs=jobs, latest=latest, results=results, now=datetime.now(UTC),
                 reported=await reported_failures(ctx, namespace, jobs, results)))
    found = await current_users(ctx, namespace, name)
    fields["conditions"] = set_condition(fields["conditions"],
                                         in_use_condition(found, body.metadata["generation"]))
    fields["conditions"] = set_condition(fields["conditions"], make_condition(
        "OutputsReadable", True, "Readable", version, body.metadata["generation"]))
    if latest:
        FRESHNESS.set(body.metadata.uid, (namespace, name, spec.feature_set, spec.version),
                      parse_time(latest["time"]).timestamp())
    if backfill is not None:
        fields["backfill"] = backfill
        if backfill["running"] and requeue is None:
            requeue = POLL_WHILE_RUNNING
    return Outcome(status={**status, **fields, "usedBy": found},
                   events=outcome.events + events, requeue_after=requeue)


def store_unavailable(body: kopf.Body, outcome: Outcome, error: str) -> Outcome:
    """The children are in place, but the outputs cannot be read: say so, keep the last known
    results, and try again soon (one Warning Event per outage)."""
    conditions = set_condition(outcome.status["conditions"], make_condition(
        "OutputsReadable", False, "ObjectStoreUnavailable", error[:1024], body.metadata["generation"]))
    events = transitions((body.get("status") or {}).get("conditions"), conditions, ANNOUNCED[INFO.kind])
    return Outcome(status={**outcome.status, "conditions": conditions},
                   events=outcome.events + events, requeue_after=STORE_RETRY)


async def reported_failures(ctx: Context, namespace: str, jobs: list[dict],
                            results: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """The cause the newest failed run's pods named, when it left no result to explain it."""
    failed = newest([j for j in jobs if job_state(j) != "Running"])
    if failed is None or job_state(failed) != "Failed" or failed["metadata"]["name"] in results:
        return {}
    run_id = failed["metadata"]["name"]
    pods = await ctx.kube.list("v1", "Pod", namespace, f"batch.kubernetes.io/job-name={run_id}")
    for pod in pods:
        for container in (pod.get("status") or {}).get("containerStatuses") or []:
            state = (container.get("state") or {}) | (container.get("lastState") or {})
            cause = podexit.reported((state.get("terminated") or {}).get("message"))
            if cause:
                return {run_id: cause}
    return {}


async def current_users(ctx: Context, namespace: str, name: str) -> list[str]:
    model_versions = await ctx.kube.list("ferry.dev/v1alpha1", "ModelVersion", namespace, "")
    services = await ctx.kube.list("ferry.dev/v1alpha1", "InferenceService", namespace, "")
    return users(name, model_versions, services)


@kopf.on.delete(GROUP, VERSION, INFO.plural,
                id="featurepipelines.in-use", backoff=DELETION_RETRY)
async def hold_while_in_use(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Keep the finalizer while a served model depends on these features (DESIGN: roll back
    together). The check repeats until nothing uses the pipeline; then deletion completes."""
    ctx: Context = memo.ctx
    found = await current_users(ctx, body.metadata.namespace, body.metadata.name)
    if not found:
        FRESHNESS.forget(body.metadata.uid)
        return
    status = dict(body.get("status") or {})
    conditions = set_condition(status.get("conditions"),
                               in_use_condition(found, body.metadata.get("generation"), True))
    await ctx.kube.patch_status(INFO, body.metadata.namespace, body.metadata.name,
                                {"conditions": conditions, "usedBy": found})
    event = deletion_blocked_event(found)
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)
    raise kopf.TemporaryError(event.message, delay=DELETION_RETRY)


_published: dict[str, tuple[str | None, str | None]] = {}  # uid -> what consumers last read


@kopf.on.event(GROUP, VERSION, INFO.plural, id="featurepipelines.wake-consumers")
async def output_changed(event: dict, body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """The pipeline's readiness or published output changed (or it is gone): wake the runs that
    wait for it and the services serving models trained on it now, not at their next resync."""
    uid = body.metadata.uid
    if event.get("type") == "DELETED":
        _published.pop(uid, None)
    elif _published.get(uid) == (current := published(body)):
        return
    else:
        _published[uid] = current
    controllers = memo.controllers
    for dependent in consumers(body.metadata.name,
                               controllers.in_namespace(body.metadata.namespace)):
        controllers.wake(dependent)


register(INFO, reconcile)
