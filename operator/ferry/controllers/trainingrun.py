"""TrainingRun controller: MLflow run first (found again by uid), then the Job, then status.

The operator creates the MLflow run so the pod logs into a run it already knows
(``MLFLOW_RUN_ID``); the run id is recorded in status before the Job can start, and both are
found again after a restart, so a restarted operator creates neither a second run nor a second Job.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import kopf

from ferry.adapters.mlflow import RegistryUnavailable, Tracker
from ferry.api import GROUP, KINDS, VERSION
from ferry.builders.trainingrun import Tracking, build_children, job_name
from ferry.controllers._worker import Context, register
from ferry.reconcilers.accept import accept
from ferry.reconcilers.outcome import Event, Outcome
from ferry.reconcilers.trainingrun import Observed, decide
from ferry.status import find_condition, make_condition, set_condition

INFO = KINDS["TrainingRun"]
MLFLOW_RUN_END = {"Succeeded": "FINISHED", "Failed": "FAILED"}
TERMINAL = tuple(MLFLOW_RUN_END)
SCHEDULING_REASONS = ("InsufficientGPU", "Unschedulable")


@cache
def tracker(uri: str) -> Tracker:
    return Tracker(uri)


async def features_uri(ctx: Context, namespace: str, pipeline: str | None) -> str | None:
    if not pipeline:
        return None
    found = await ctx.kube.get(f"{GROUP}/{VERSION}", "FeaturePipeline", namespace, pipeline)
    return ((found or {}).get("status") or {}).get("latestOutputUri")


async def reconcile(ctx: Context, body: kopf.Body) -> Outcome:
    spec, outcome = accept(INFO, body)
    if spec is None:
        return outcome
    namespace, name, uid = body.metadata.namespace, body.metadata.name, body.metadata.uid
    generation = body.metadata["generation"]
    status = {**dict(body.get("status") or {}), **outcome.status}
    previous = body.get("status") or {}
    if previous.get("phase") in TERMINAL and previous.get("observedGeneration") == generation:
        return Outcome(status=outcome.status | {"phase": previous["phase"]})  # runs end once
    run = ctx.kube.executors.run
    uri = spec.mlflow.tracking_uri or ctx.config.mlflow_uri
    experiment = spec.mlflow.experiment or namespace
    run_id, experiment_id = status.get("mlflowRunId"), status.get("experimentId")
    events = list(outcome.events)
    try:
        if uri and not run_id:
            run_id, experiment_id = await run(
                "mlflow", tracker(uri).ensure_run, experiment, uid,
                {"ferry.dev/namespace": namespace, "ferry.dev/name": name,
                 "ferry.dev/image": spec.image, "mlflow.runName": name,
                 **({"ferry.dev/features": spec.features} if spec.features else {})})
            events.append(Event("Normal", "TrackingStarted", f"MLflow run {run_id} in {experiment}"))
    except RegistryUnavailable as error:
        conditions = set_condition(outcome.status["conditions"], make_condition(
            "TrackingReachable", False, "MlflowUnavailable", str(error)[:1024], generation))
        return Outcome(status={**outcome.status, "conditions": conditions}, events=events,
                       requeue_after=10)

    tracking = Tracking(tracking_uri=uri, experiment=experiment if uri else None, run_id=run_id,
                        features_uri=await features_uri(ctx, namespace, spec.features))
    job = await ctx.kube.get("batch/v1", "Job", namespace, job_name(name))
    pods = await ctx.kube.list("v1", "Pod", namespace,
                               f"batch.kubernetes.io/job-name={job_name(name)}")
    metrics = {}
    if uri and run_id:
        try:
            metrics = (await run("mlflow", tracker(uri).run, run_id)).metrics
        except RegistryUnavailable:
            pass  # progress is best effort; the next poll tries again
    fields, new_events, requeue = decide(spec, status, generation, Observed(
        job=job, pods=pods, metrics=metrics, now=datetime.now(UTC)))
    succeeded = find_condition(fields["conditions"], "Succeeded")
    gave_up = None
    if fields["phase"] == "Failed" and succeeded["reason"] in SCHEDULING_REASONS:
        gave_up = fields["message"]  # suspend the Job: its pending workers leave the queue
    for child in build_children(dict(body), spec, tracking, gave_up):
        # A Job's pod template is immutable: a started run keeps the spec it started with.
        if child["kind"] != "Job" or job is None or gave_up:
            await ctx.kube.apply(child)
    if fields["phase"] in MLFLOW_RUN_END and uri and run_id:
        await run("mlflow", tracker(uri).end_run, run_id, MLFLOW_RUN_END[fields["phase"]])
    new_status = {**outcome.status, **fields}
    if run_id:
        new_status |= {"mlflowRunId": run_id, "experimentId": experiment_id}
    return Outcome(status=new_status, events=events + new_events, requeue_after=requeue)


@kopf.on.delete(GROUP, VERSION, INFO.plural, id="trainingruns.end-tracking", optional=True)
async def end_tracking(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Children go with the garbage collector; the MLflow run is marked KILLED if still open."""
    ctx: Context = memo.ctx
    run_id = (body.get("status") or {}).get("mlflowRunId")
    uri = ((body.get("spec") or {}).get("mlflow") or {}).get("trackingUri") or ctx.config.mlflow_uri
    if run_id and uri:
        try:
            await ctx.kube.executors.run("mlflow", tracker(uri).end_run, run_id, "KILLED")
        except RegistryUnavailable as error:
            raise kopf.TemporaryError(f"MLflow unavailable: {error}", delay=10) from error


register(INFO, reconcile)
