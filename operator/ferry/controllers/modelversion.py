"""ModelVersion controller: register once in MLflow, record lineage, evaluate gates and approval.

Registration is idempotent across restarts: the registry version is found again by the
``ferry.dev/uid`` tag before anything is created. An unreachable MLflow sets
``RegistryReachable=False`` and retries with backoff; nothing is lost or duplicated.
"""

from __future__ import annotations

from datetime import datetime, UTC
from functools import cache

import kopf

from ferry.adapters.mlflow import CHAMPION, Registry, RegistryRejected, RegistryUnavailable
from ferry.api import GROUP, KINDS, VERSION
from ferry.api.modelversion import ModelVersionSpec
from ferry.controllers._worker import Context, register
from ferry.failpoints import failpoint
from ferry.reconcilers.accept import accept
from ferry.reconcilers.modelversion import Observed, decide
from ferry.reconcilers.outcome import Event, Outcome
from ferry.reconcilers.retrain_policy import EVIDENCE_ANNOTATION, TRIGGERS_ANNOTATION
from ferry.reconcilers.usage import served_model_versions
from ferry.status import ANNOUNCED, find_condition, make_condition, set_condition, transitions

INFO = KINDS["ModelVersion"]
UNREACHABLE_RETRY = 10.0
DELETION_RETRY = 5.0
TAG_LIMIT = 5000  # MLflow's limit on a model version tag's value


@cache
def registry(uri: str) -> Registry:
    return Registry(uri)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def get_optional(ctx: Context, kind: str, namespace: str, name: str) -> dict | None:
    return await ctx.kube.get(f"{GROUP}/{VERSION}", kind, namespace, name)


async def served_by(ctx: Context, namespace: str, name: str) -> list[str]:
    services = await ctx.kube.list(f"{GROUP}/{VERSION}", "InferenceService", namespace, "")
    return sorted(f"InferenceService/{s['metadata']['name']}" for s in services
                  if name in served_model_versions(s))


async def resolve_source(ctx: Context, spec: ModelVersionSpec, namespace: str,
                         status: dict) -> dict:
    """Source URI, run id and training facts, from the spec or the referenced TrainingRun — or,
    once registered, from status: a ModelVersion outlives the TrainingRun it came from.

    A TrainingRun is registered from only once it has Succeeded: before that its MLflow run has
    neither the model (the version would point at an empty folder) nor the final metrics. Until
    then the result is ``{"waiting": (reason, message)}``."""
    if spec.source:
        run_id = spec.source.split("/")[1] if spec.source.startswith("runs:/") else None
        return {"source": spec.source, "runId": run_id}
    ref = spec.training_run_ref
    run = await get_optional(ctx, "TrainingRun", namespace, ref)
    run_status = (run or {}).get("status") or {}
    run_id = run_status.get("mlflowRunId")
    lineage = status.get("lineage") or {}
    if run is None and status.get("source") and lineage.get("trainingRun") == ref:
        return {"source": status["source"], "trainingRun": ref,
                **{k: lineage.get(k) for k in ("runId", "image", "dataUri", "retrainTriggers")}}
    if run is None:
        return {"waiting": ("WaitingForTrainingRun", f"TrainingRun {ref} not found.")}
    phase = run_status.get("phase")
    if phase == "Failed" and not status.get("mlflowVersion"):
        return {"waiting": ("TrainingRunFailed", f"TrainingRun {ref} failed: nothing to register.")}
    if not run_id:
        return {"waiting": ("WaitingForTrainingRun", f"TrainingRun {ref} has no MLflow run yet.")}
    if phase != "Succeeded" and not status.get("mlflowVersion"):
        return {"waiting": ("WaitingForTrainingRun", f"TrainingRun {ref} is {phase or 'Pending'}; "
                            "registered once it has Succeeded.")}
    artifact = ((run["spec"].get("register") or {}).get("artifactPath")) or "model"
    return {"source": f"runs:/{run_id}/{artifact}", "runId": run_id,
            "trainingRun": spec.training_run_ref, "image": run["spec"].get("image"),
            "dataUri": run["status"].get("featuresUri"),  # the exact features it trained on
            **({"retrainTriggers": triggers} if (triggers := retrain_triggers(run)) else {}),
            **({"retrainTags": tags} if (tags := retrain_tags(run)) else {})}


def retrain_triggers(run: dict) -> list[str] | None:
    """The retrainPolicy triggers a retraining run records, for the lineage."""
    triggers = ((run.get("metadata") or {}).get("annotations") or {}).get(TRIGGERS_ANNOTATION)
    return triggers.split(",") if triggers else None


def retrain_tags(run: dict) -> dict[str, str]:
    """A retraining run's triggers and evidence, carried to the registry version it produced
    (evidence longer than a registry tag holds stays on the TrainingRun only)."""
    annotations = (run.get("metadata") or {}).get("annotations") or {}
    return {key: annotations[key] for key in (TRIGGERS_ANNOTATION, EVIDENCE_ANNOTATION)
            if annotations.get(key) and len(annotations[key]) <= TAG_LIMIT}


def lineage_tags(lineage: dict) -> dict[str, str]:
    return {f"ferry.dev/{key}": str(value) for key, value in lineage.items()
            if isinstance(value, str) and value}


async def reconcile(ctx: Context, body: kopf.Body) -> Outcome:
    spec, outcome = accept(INFO, body)
    if spec is None:
        return outcome
    if not ctx.config.mlflow_uri:
        return unreachable(outcome, body, "the operator has no MLflow URI (FERRY_MLFLOW_URI)")
    namespace, name, uid = body.metadata.namespace, body.metadata.name, body.metadata.uid
    generation = body.metadata["generation"]
    status = dict(body.get("status") or {})
    origin = await resolve_source(ctx, spec, namespace, status)
    if "waiting" in origin:
        reason, message = origin["waiting"]
        conditions = set_condition(outcome.status["conditions"], make_condition(
            "Registered", False, reason, message, generation))
        return Outcome(status={**outcome.status, "conditions": conditions, "phase": "Pending"},
                       events=outcome.events,
                       requeue_after=60 if reason == "TrainingRunFailed" else 15)

    lineage = {"trainingRun": origin.get("trainingRun"), "runId": origin.get("runId"),
               "image": origin.get("image"), "featurePipeline": spec.features,
               "retrainTriggers": origin.get("retrainTriggers")}
    pipeline = await get_optional(ctx, "FeaturePipeline", namespace, spec.features) \
        if spec.features else None
    if pipeline:
        lineage["featureVersion"] = pipeline["spec"].get("version")
        lineage["dataUri"] = origin.get("dataUri") or \
            (pipeline.get("status") or {}).get("latestOutputUri")
    features_ready = None
    feature_columns = None
    if pipeline:
        ready = find_condition((pipeline.get("status") or {}).get("conditions"), "Ready")
        features_ready = bool(ready and ready["status"] == "True")
        schema = (pipeline.get("status") or {}).get("schema") or {}
        feature_columns = [c["name"] for c in schema.get("columns", [])] or None

    mlflow = registry(ctx.config.mlflow_uri)
    run = ctx.kube.executors.run
    try:
        version = await run("mlflow", mlflow.register, spec.model_name, uid, origin["source"],
                            origin.get("runId"), spec.description,
                            {**spec.tags, **lineage_tags(lineage),
                             **origin.get("retrainTags", {})})
        failpoint("modelversion.registered")
        facts = await run("mlflow", mlflow.run, origin["runId"]) if origin.get("runId") else None
        champion = await run("mlflow", mlflow.version_by_alias, spec.model_name, CHAMPION)
        champion_metrics = {}
        if champion is not None and champion.run_id and champion.version != version.version:
            champion_metrics = (await run("mlflow", mlflow.run, champion.run_id)).metrics
        columns = None
        if spec.gates.signature:
            columns = await run("mlflow", mlflow.input_columns, origin["source"])
    except RegistryUnavailable as error:
        return unreachable(outcome, body, str(error))
    except RegistryRejected as error:  # e.g. the source run does not exist: report, retry slowly
        message = str(error).splitlines()[0][:1024]
        conditions = set_condition(outcome.status["conditions"], make_condition(
            "Registered", False, "RegistrationFailed", message, generation))
        events = transitions(status.get("conditions"), conditions, ANNOUNCED[INFO.kind])
        return Outcome(status={**outcome.status, "conditions": conditions, "phase": "Registering"},
                       events=outcome.events + events, requeue_after=60)

    if facts:
        lineage |= {"experiment": facts.experiment_id, "parameters": facts.params,
                    "metrics": facts.metrics}
    seen = Observed(version=version.version, metrics=facts.metrics if facts else {},
                    champion=champion.version if champion else None,
                    champion_metrics=champion_metrics, features_ready=features_ready,
                    input_columns=columns, feature_columns=feature_columns,
                    served_by=await served_by(ctx, namespace, name), now=now())
    fields, events = decide(spec, {**status, **outcome.status}, generation, seen)
    conditions = set_condition(fields["conditions"], make_condition(
        "RegistryReachable", True, "Reachable", ctx.config.mlflow_uri, generation))
    conditions = set_condition(conditions, make_condition(
        "Registered", True, "Registered", f"{spec.model_name} version {version.version}",
        generation))
    if "approval" in fields and fields["approval"] != status.get("approval"):
        record = fields["approval"]
        await run("mlflow", mlflow.set_tags, spec.model_name, version.version, {
            "ferry.dev/approved-by": record["by"], "ferry.dev/approved-at": record["at"],
            "ferry.dev/approval-comment": record.get("comment", "")})
        events.append(Event("Normal", "Approved",
                            f"Approved by {record['by']} at {record['at']}"
                            + (f": {record['comment']}" if record.get("comment") else "")))
    if status.get("mlflowVersion") != version.version:
        events.append(Event("Normal", "Registered",
                            f"Registered {spec.model_name} version {version.version}"))
    new_status = {**outcome.status, **fields, "conditions": conditions,
                  "mlflowVersion": version.version, "source": origin["source"],
                  "lineage": {k: v for k, v in lineage.items() if v not in (None, "", {})}}
    return Outcome(status=new_status, events=outcome.events + events)


def unreachable(outcome: Outcome, body: kopf.Body, error: str) -> Outcome:
    status = body.get("status") or {}
    conditions = set_condition(outcome.status["conditions"], make_condition(
        "RegistryReachable", False, "RegistryUnavailable", error[:1024],
        body.metadata["generation"]))
    events = transitions(status.get("conditions"), conditions, ANNOUNCED[INFO.kind])
    phase = status.get("phase") or "Registering"
    return Outcome(status={**outcome.status, "conditions": conditions,
                           "phase": "Registering" if phase in ("Pending", "Invalid") else phase},
                   events=outcome.events + events, requeue_after=UNREACHABLE_RETRY)


@kopf.on.delete(GROUP, VERSION, INFO.plural, id="modelversions.cleanup", backoff=DELETION_RETRY)
async def cleanup(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Hold deletion while served; then apply ``deletionPolicy`` to the registry version."""
    ctx: Context = memo.ctx
    namespace, name = body.metadata.namespace, body.metadata.name
    users = await served_by(ctx, namespace, name)
    if users:
        status = dict(body.get("status") or {})
        message = f"Deletion is held: served by {', '.join(users)}."
        conditions = set_condition(status.get("conditions"), make_condition(
            "InUse", True, "DeletionBlocked", message, body.metadata.get("generation")))
        await ctx.kube.patch_status(INFO, namespace, name, {"conditions": conditions,
                                                            "servedBy": users})
        kopf.event(body, type="Warning", reason="DeletionBlocked", message=message)
        raise kopf.TemporaryError(message, delay=DELETION_RETRY)
    spec = body.get("spec") or {}
    version = (body.get("status") or {}).get("mlflowVersion")
    if spec.get("deletionPolicy") == "Delete" and version and ctx.config.mlflow_uri:
        await ctx.kube.executors.run("mlflow", registry(ctx.config.mlflow_uri).delete_version,
                                     spec["modelName"], version)


register(INFO, reconcile)
