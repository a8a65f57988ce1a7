"""TrainingRun controller: MLflow run first (found again by uid), then the Job — or, for a sweep,
the trial TrainingRuns — then status; when the run succeeds, the ModelVersion of ``register``.

The operator creates the MLflow run so the pod logs into a run it already knows
(``MLFLOW_RUN_ID``); the run id is recorded in status before the Job can start, and both are
found again after a restart, so a restarted operator creates neither a second run nor a second Job.
Children are applied only when they are created (a Job's pod template is immutable, so a started
run keeps the spec it started with); a reconcile that changes nothing writes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import cache

import kopf

from ferry.adapters.mlflow import RegistryUnavailable, Tracker
from ferry.api import API_VERSION, GROUP, KINDS, VERSION
from ferry.api.trainingrun import TrainingRunSpec
from ferry.builders.trainingrun import (
    GAVE_UP, KIND, PARENT_RUN_ANNOTATION, SWEEP_LABEL, TRIAL_LABEL, Tracking, build_children, build_job,
    build_model_version, build_trial, job_name)
from ferry.controllers._worker import Context, register
from ferry.controllers.children import owner_uids
from ferry.reconcilers.accept import accept
from ferry.reconcilers.features import Features, readiness
from ferry.reconcilers.outcome import Event, Outcome
from ferry.reconcilers.sweep import (
    TrialView, decide_sweep, effective_seed, to_start, trial_count, trial_parameters)
from ferry.reconcilers.trainingrun import (
    POLL_WHILE_RUNNING, SCHEDULING_REASONS, Observed, attempt_of, current_job, decide, job_phase,
    plan_restart, pod_security_refusal)
from ferry.status import ANNOUNCED, find_condition, make_condition, set_condition, transitions

INFO = KINDS["TrainingRun"]
MLFLOW_RUN_END = {"Succeeded": "FINISHED", "Failed": "FAILED"}
TERMINAL = tuple(MLFLOW_RUN_END)
# A namespace relabelled to admit the run's Pod Security level is noticed within this time.
REFUSED_RETRY = 30.0
ACKNOWLEDGED_REQUEUE = 0.01  # seconds: the reconcile after a new run's first status write
RUN_LABEL = f"ferry.dev/{KIND.lower()}"


@cache
def tracker(uri: str) -> Tracker:
    return Tracker(uri)


@dataclass(frozen=True)
class Tracked:
    uri: str | None
    experiment: str | None
    run_id: str | None
    experiment_id: str | None


def owned(items: list[dict], uid: str) -> list[dict]:
    """Children of this very object (not of an earlier one with the same name)."""
    return [i for i in items if any(ref.get("uid") == uid
                                    for ref in i["metadata"].get("ownerReferences") or [])]


def container_env(job: dict, name: str) -> str | None:
    for container in job["spec"]["template"]["spec"]["containers"]:
        for env in container.get("env") or []:
            if env["name"] == name:
                return env.get("value")
    return None


async def read_features(ctx: Context, namespace: str, pipeline: str) -> Features:
    found = await ctx.kube.get(API_VERSION, "FeaturePipeline", namespace, pipeline)
    return readiness(pipeline, found)


async def start_tracking(ctx: Context, body: kopf.Body, spec: TrainingRunSpec,
                         status: dict) -> tuple[Tracked, list[Event]]:
    """The run's MLflow run (a sweep trial's is nested under the sweep's); raises
    RegistryUnavailable."""
    namespace, name = body.metadata.namespace, body.metadata.name
    uri = spec.mlflow.tracking_uri or ctx.config.mlflow_uri
    experiment = spec.mlflow.experiment or namespace
    run_id, experiment_id = status.get("mlflowRunId"), status.get("experimentId")
    events = []
    if uri and not run_id:
        tags = {"ferry.dev/namespace": namespace, "ferry.dev/name": name,
                "ferry.dev/image": spec.image, "mlflow.runName": name}
        if spec.features:
            tags["ferry.dev/features"] = spec.features
        if parent := (body.metadata.annotations or {}).get(PARENT_RUN_ANNOTATION):
            tags["mlflow.parentRunId"] = parent
        run_id, experiment_id = await ctx.kube.executors.run(
            "mlflow", tracker(uri).ensure_run, experiment, body.metadata.uid, tags)
        events.append(Event("Normal", "TrackingStarted", f"MLflow run {run_id} in {experiment}"))
    return Tracked(uri, experiment if uri else None, run_id, experiment_id), events


async def logged_metrics(ctx: Context, tracked: Tracked) -> dict[str, float]:
    if not (tracked.uri and tracked.run_id):
        return {}
    try:
        return (await ctx.kube.executors.run("mlflow", tracker(tracked.uri).run,
                                             tracked.run_id)).metrics
    except RegistryUnavailable:
        return {}  # progress is best effort; the next poll tries again


async def reconcile_job(ctx: Context, body: kopf.Body, spec: TrainingRunSpec, status: dict,
                        tracked: Tracked) -> tuple[dict, list[Event], float | None]:
    """One run: its Job (attempts of a distributed run), pods and logged metrics → status."""
    namespace, name, uid = body.metadata.namespace, body.metadata.name, body.metadata.uid
    owner = dict(body)
    jobs = owned(await ctx.kube.list("batch/v1", "Job", namespace, f"{RUN_LABEL}={name}"), uid)
    job = current_job(jobs)
    attempt = attempt_of(job)
    pods = await ctx.kube.list("v1", "Pod", namespace,
                               f"batch.kubernetes.io/job-name={job_name(name, attempt)}") \
        if job else []
    events = []
    # Only the first start waits for the features; a started run (and its restarts) keeps the
    # output it started with.
    features = await read_features(ctx, namespace, spec.features) \
        if job is None and spec.features else None
    if features is not None and not features.ready:
        return decide(spec, status, body.metadata["generation"], Observed(
            job=None, now=datetime.now(UTC), features=features))
    if job is None and spec.pod_security != "restricted":
        refused = pod_security_refusal(spec, await ctx.kube.get("v1", "Namespace", "", namespace))
        if refused:
            fields, events, _ = decide(spec, status, body.metadata["generation"], Observed(
                job=None, now=datetime.now(UTC), features=features, refused=refused))
            return fields, events, REFUSED_RETRY
    restart = plan_restart(spec, jobs, pods)
    data_uri = container_env(job, "FERRY_FEATURES_URI") if job else \
        features.uri if features else None
    tracking = Tracking(tracking_uri=tracked.uri, experiment=tracked.experiment,
                        run_id=tracked.run_id, features_uri=data_uri,
                        s3_endpoint=ctx.config.s3_endpoint,
                        object_store_secret=ctx.config.default_object_store_secret)
    if restart is not None and restart.ready:
        attempt, job, pods = restart.attempt, None, []
        events.append(Event("Warning", "Restarting", restart.message))
    if job is None:  # first start, or the next attempt: the Job comes last
        for child in build_children(owner, spec, tracking, attempt=attempt,
                                    cause=restart.cause if restart else None):
            job = await ctx.kube.apply(child)
        restart = None
    fields, new_events, requeue = decide(spec, status, body.metadata["generation"], Observed(
        job=job, pods=pods, metrics=await logged_metrics(ctx, tracked),
        now=datetime.now(UTC), attempt=attempt, restart=restart, features=features))
    succeeded = find_condition(fields["conditions"], "Succeeded")
    if fields["phase"] == "Failed" and succeeded["reason"] in SCHEDULING_REASONS \
            and not (job["metadata"].get("annotations") or {}).get(GAVE_UP) \
            and job_phase(job) not in TERMINAL:
        # Suspend the Job: its pending workers leave the queue (a finished Job has none).
        await ctx.kube.apply(build_job(owner, spec, tracking, gave_up=fields["message"],
                                       attempt=attempt))
    if data_uri:
        fields["featuresUri"] = data_uri
    return fields, events + new_events, requeue


def trial_view(trial: dict) -> TrialView:
    labels, status = trial["metadata"].get("labels") or {}, trial.get("status") or {}
    return TrialView(
        index=int(labels[TRIAL_LABEL]), name=trial["metadata"]["name"],
        parameters={}, phase=status.get("phase"), metrics=status.get("metrics"),
        mlflow_run_id=status.get("mlflowRunId"), start_time=status.get("startTime"),
        completion_time=status.get("completionTime"))


async def reconcile_sweep(ctx: Context, body: kopf.Body, spec: TrainingRunSpec, status: dict,
                          tracked: Tracked) -> tuple[dict, list[Event], float | None]:
    """A sweep: start the next trials (at most ``parallelism`` unfinished), report all of them."""
    namespace, name, uid = body.metadata.namespace, body.metadata.name, body.metadata.uid
    sweep = spec.sweep
    seed = effective_seed(sweep, uid)
    found = owned(await ctx.kube.list(API_VERSION, "TrainingRun", namespace,
                                    f"{SWEEP_LABEL}={name}"), uid)
    trials = {view.index: view for view in map(trial_view, found)}
    events = []
    for index in to_start(trial_count(sweep), sweep.parallelism,
                          {i: t.phase for i, t in trials.items()}):
        parameters = trial_parameters(sweep, seed, index)
        created = await ctx.kube.apply(build_trial(dict(body), index, parameters,
                                                   tracked.run_id))
        trials[index] = trial_view(created)
        events.append(Event("Normal", "TrialCreated",
                            f"{created['metadata']['name']}: {parameters}"))
    views = [replace(t, parameters=trial_parameters(sweep, seed, i)) for i, t in trials.items()]
    fields, new_events = decide_sweep(sweep, status, body.metadata["generation"], views)
    done = fields["phase"] in TERMINAL
    return fields, events + new_events, None if done else POLL_WHILE_RUNNING


async def register_model(ctx: Context, body: kopf.Body, spec: TrainingRunSpec,
                         status: dict) -> tuple[dict, list[Event]]:
    """Get-or-create the ModelVersion of a succeeded run with ``register`` (not for a trial: its
    sweep registers the best trial). Returns the status fields and Events to add."""
    labels = body.metadata.labels or {}
    if spec.registration is None or status.get("phase") != "Succeeded" or SWEEP_LABEL in labels:
        return {}, []
    namespace, name = body.metadata.namespace, body.metadata.name
    source = status.get("bestTrial") if spec.sweep else name
    manifest = build_model_version(dict(body), spec, source)
    mv_name = manifest["metadata"]["name"]
    if status.get("modelVersion") == mv_name:
        return {}, []
    generation = body.metadata["generation"]
    existing = await ctx.kube.get(API_VERSION, "ModelVersion", namespace, mv_name)
    if existing is not None and (existing["metadata"].get("labels") or {}).get(RUN_LABEL) != name:
        message = f"ModelVersion {mv_name} exists and was not created for this run."
        conditions = set_condition(status.get("conditions"), make_condition(
            "Registered", False, "NameTaken", message, generation))
        return {"conditions": conditions}, transitions(status.get("conditions"), conditions,
                                                       ANNOUNCED[INFO.kind])
    events = []
    if existing is None:
        await ctx.kube.apply(manifest)
        events.append(Event("Normal", "ModelVersionCreated",
                             f"ModelVersion {mv_name} for {spec.registration.model_name} "
                             f"from {source}"))
    condition = make_condition("Registered", True, "ModelVersionCreated",
                               f"ModelVersion {mv_name}", generation)
    return {"modelVersion": mv_name,
            "conditions": set_condition(status.get("conditions"), condition)}, events


async def reconcile(ctx: Context, body: kopf.Body) -> Outcome:
    spec, outcome = accept(INFO, body)
    if spec is None:
        return outcome
    generation = body.metadata["generation"]
    previous = dict(body.get("status") or {})
    if not previous.get("conditions"):
        # A new run shows it is Accepted before the MLflow round trips of its start, which a busy
        # tracking server can hold up for longer than a user waits for a first condition.
        return Outcome(status=outcome.status, events=outcome.events,
                       requeue_after=ACKNOWLEDGED_REQUEUE)
    status = {**previous, **outcome.status}
    if previous.get("phase") in TERMINAL and previous.get("observedGeneration") == generation:
        # Runs end once; only the registration of a succeeded run may still be missing.
        fields, events = await register_model(ctx, body, spec, status)
        return Outcome(status=outcome.status | {"phase": previous["phase"]} | fields,
                       events=outcome.events + events)
    try:
        tracked, events = await start_tracking(ctx, body, spec, status)
    except RegistryUnavailable as error:
        conditions = set_condition(outcome.status["conditions"], make_condition(
            "TrackingReachable", False, "MlflowUnavailable", str(error)[:1024], generation))
        return Outcome(status={**outcome.status, "conditions": conditions},
                       events=outcome.events, requeue_after=10)
    step = reconcile_sweep if spec.sweep else reconcile_job
    fields, new_events, requeue = await step(ctx, body, spec, status, tracked)
    if fields["phase"] in MLFLOW_RUN_END and tracked.run_id:
        await ctx.kube.executors.run("mlflow", tracker(tracked.uri).end_run, tracked.run_id,
                                     MLFLOW_RUN_END[fields["phase"]])
    new_status = {**outcome.status, **fields}
    if tracked.run_id:
        new_status |= {"mlflowRunId": tracked.run_id, "experimentId": tracked.experiment_id}
    registered, register_events = await register_model(ctx, body, spec, {**status, **new_status})
    return Outcome(status=new_status | registered,
                   events=outcome.events + events + new_events + register_events,
                   requeue_after=requeue)


@kopf.on.event(GROUP, VERSION, INFO.plural, labels={SWEEP_LABEL: kopf.PRESENT},
               id="trainingruns.wake-sweep")
async def trial_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A trial changed: wake its sweep, which may start the next trial or finish."""
    for uid in owner_uids(body):
        memo.controllers.wake(uid)


def tracking_uri(body: kopf.Body, ctx: Context) -> str | None:
    return ((body.get("spec") or {}).get("mlflow") or {}).get("trackingUri") or ctx.config.mlflow_uri


def tracked_in_mlflow(body: kopf.Body, memo: kopf.Memo, **_) -> bool:
    """Only a run with an MLflow server has something outside Kubernetes to end on deletion, so
    only such a run carries the finalizer (an API write per run, and a deletion that waits)."""
    return tracking_uri(body, memo.ctx) is not None


@kopf.on.delete(GROUP, VERSION, INFO.plural, id="trainingruns.end-tracking", when=tracked_in_mlflow)
async def end_tracking(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Children go with the garbage collector; the MLflow run is marked KILLED if still open."""
    ctx: Context = memo.ctx
    run_id = (body.get("status") or {}).get("mlflowRunId")
    uri = tracking_uri(body, ctx)
    if run_id and uri:
        try:
            await ctx.kube.executors.run("mlflow", tracker(uri).end_run, run_id, "KILLED")
        except RegistryUnavailable as error:
            raise kopf.TemporaryError(f"MLflow unavailable: {error}", delay=10) from error


register(INFO, reconcile)
