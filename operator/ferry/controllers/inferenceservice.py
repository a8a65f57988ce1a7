"""InferenceService controller: resolve the model, measure when due, decide, apply, one status patch.

All rollout decisions are made by ``reconcilers.rollout`` from ``status.rollout``; this module only
reads (ModelVersions, FeaturePipelines, Deployments, Prometheus), applies the plan's children,
deletes the Deployments and Services the plan no longer lists, and keeps the MLflow aliases
(``champion`` = stable, ``challenger`` = candidate) where the status says they should be.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import kopf

from ferry.adapters.mlflow import CHALLENGER, CHAMPION, Registry, RegistryRejected, \
    RegistryUnavailable
from ferry.adapters.prometheus import Prometheus, PrometheusUnavailable
from ferry.api import GROUP, KINDS, VERSION
from ferry.api.inferenceservice import InferenceServiceSpec, ServedModel
from ferry.builders.inferenceservice import (
    SERVICE_LABEL, Serving, build_children, deployment_name, selector_string, url)
from ferry.controllers._worker import Context, register
from ferry.controllers.drift import reconcile_monitoring
from ferry.controllers.quality import reconcile_quality
from ferry.controllers.retrain import reconcile_retrain_policy
from ferry.reconcilers import analysis
from ferry.reconcilers.accept import accept, rejected
from ferry.reconcilers.experiment import not_served
from ferry.reconcilers.features import readiness
from ferry.reconcilers.gateway import HTTPROUTE_CRD, route_support
from ferry.reconcilers.outcome import Event, Outcome
from ferry.reconcilers.rollout import Due, Observed, decide, measurement_due
from ferry.status import ANNOUNCED, find_condition, make_condition, set_condition, transitions

INFO = KINDS["InferenceService"]


@cache
def registry(uri: str) -> Registry:
    return Registry(uri)


@cache
def prometheus(uri: str) -> Prometheus:
    return Prometheus(uri)


def served_model(mv: dict) -> ServedModel:
    status = mv.get("status") or {}
    model, version = mv["spec"]["modelName"], status.get("mlflowVersion")
    return ServedModel(model_version=mv["metadata"]["name"], mlflow_version=version,
                       model_name=model, uri=f"models:/{model}/{version}")


def approved(mv: dict) -> bool:
    """Its ``Approved`` condition, whatever the phase (Approved, Serving, or Retired: served
    before and approved still)."""
    found = find_condition((mv.get("status") or {}).get("conditions"), "Approved")
    return bool(found and found["status"] == "True")


def newest_approved(versions: list[dict], model_name: str) -> dict | None:
    """The approved ModelVersion of ``model_name`` with the highest MLflow version."""
    candidates = [mv for mv in versions
                  if mv.get("spec", {}).get("modelName") == model_name and approved(mv)
                  and str((mv.get("status") or {}).get("mlflowVersion") or "").isdigit()]
    return max(candidates, key=lambda mv: int(mv["status"]["mlflowVersion"]), default=None)


async def resolve(ctx: Context, spec: InferenceServiceSpec, namespace: str):
    """(target, blocked, features condition args) for ``spec.model``."""
    ref = spec.model
    api = f"{GROUP}/{VERSION}"
    if ref.model_version:
        mv = await ctx.kube.get(api, "ModelVersion", namespace, ref.model_version)
        if mv is None:
            return None, ("ModelVersionNotFound", f"ModelVersion {ref.model_version} not found"), \
                None
    else:
        mv = newest_approved(await ctx.kube.list(api, "ModelVersion", namespace, ""),
                             ref.model_name)
        if mv is None:
            return None, ("NoApprovedVersion",
                          f"no approved ModelVersion of {ref.model_name}"), None
    status = mv.get("status") or {}
    name = mv["metadata"]["name"]
    if not status.get("mlflowVersion"):
        return None, ("ModelNotRegistered", f"{name} is not registered in MLflow yet"), None
    target = served_model(mv)
    blocked = None
    if not approved(mv):
        blocked = ("ModelNotApproved", f"{name} is {status.get('phase') or 'Pending'}, "
                                       "not Approved")
    features = None
    if pipeline := mv["spec"].get("features"):
        gate = readiness(pipeline, await ctx.kube.get(api, "FeaturePipeline", namespace, pipeline))
        features = gate.condition()
        if not gate.ready:
            blocked = blocked or (gate.reason, gate.message)
    return target, blocked, features


def query_all(client: Prometheus | None, checks: list[analysis.Check], now: str,
              version: str) -> list[dict]:
    """Run every check's queries (sync, in the prometheus pool); errors become Inconclusive."""
    results = []
    for check in checks:
        try:
            if client is None:
                raise PrometheusUnavailable("no Prometheus configured (FERRY_PROMETHEUS_URL)")
            answers = [client.query(q) for q in check.queries]
        except PrometheusUnavailable as error:
            answers = error
        results.append(analysis.evaluate(check, answers, now, version))
    return results


async def measure(ctx: Context, due: Due, namespace: str, name: str, now: datetime) -> list[dict]:
    target = analysis.Target(namespace=namespace, service=name, model=due.target.model_name or "",
                             version=due.target.mlflow_version or "",
                             stable_version=due.baseline.mlflow_version if due.baseline else None,
                             interval=due.analysis.interval)
    client = prometheus(ctx.config.prometheus_url) if ctx.config.prometheus_url else None
    return await ctx.kube.executors.run(
        "prometheus", query_all, client, analysis.checks(due.analysis, target),
        now.strftime("%Y-%m-%dT%H:%M:%SZ"), target.version)


def with_deletions(old, new):
    """``new`` as a JSON merge patch over ``old``: keys that disappeared are set to null."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch = {key: with_deletions(old.get(key), value) for key, value in new.items()}
    patch.update({key: None for key in old if key not in new})
    return patch


def alias_target(model: dict | None) -> str | None:
    return f"{model['modelName']}/{model['mlflowVersion']}" if model else None


async def sync_aliases(ctx: Context, rollout: dict) -> list[Event]:
    """Move ``champion`` to the stable and ``challenger`` to the candidate, once each."""
    if not ctx.config.mlflow_uri:
        return []
    mlflow, run, events = registry(ctx.config.mlflow_uri), ctx.kube.executors.run, []
    for alias, key, model in ((CHAMPION, "champion", rollout.get("stable")),
                              (CHALLENGER, "challenger", rollout.get("candidate"))):
        wanted, current = alias_target(model), rollout.get(key)
        if wanted == current:
            continue
        if wanted:
            await run("mlflow", mlflow.set_alias, model["modelName"], alias,
                      model["mlflowVersion"])
            events.append(Event("Normal", "AliasMoved", f"MLflow alias {alias} -> {wanted}"))
        else:
            try:
                await run("mlflow", mlflow.remove_alias, current.split("/")[0], alias)
            except RegistryRejected:
                pass  # already gone
        if wanted:
            rollout[key] = wanted
        else:
            rollout.pop(key, None)
    return events


async def observe_deployments(ctx: Context, namespace: str, name: str) -> dict[str, dict]:
    found = await ctx.kube.list("apps/v1", "Deployment", namespace, selector_string(name))
    return {d["metadata"]["name"]: d for d in found}


def ready_replicas(deployments: dict[str, dict], name: str, models: list[dict | None]
                   ) -> dict[str, int]:
    ready = {}
    for model in models:
        if model:
            version = model["modelVersion"]
            found = deployments.get(deployment_name(name, version)) or {}
            ready[version] = (found.get("status") or {}).get("readyReplicas") or 0
    return ready


def total_replicas(spec: InferenceServiceSpec, deployments: dict[str, dict], name: str,
                   stable: dict | None) -> int:
    if spec.autoscaling is None or stable is None:
        return spec.replicas
    found = deployments.get(deployment_name(name, stable["modelVersion"])) or {}
    current = (found.get("spec") or {}).get("replicas") or spec.autoscaling.min_replicas
    return min(max(current, spec.autoscaling.min_replicas, 1), spec.autoscaling.max_replicas)


async def reconcile(ctx: Context, body: kopf.Body) -> Outcome:
    spec, outcome = accept(INFO, body)
    if spec is None:
        return outcome
    if (problem := not_served(spec)) is not None:
        return rejected(body, problem, "ExperimentNotServed")
    namespace, name = body.metadata.namespace, body.metadata.name
    generation = body.metadata["generation"]
    # Read the status fresh: a child's event may wake us before our own last patch reached the
    # watch, and deciding on a stale status could repeat a transition (or count a measurement twice).
    fresh = await ctx.kube.get(f"{GROUP}/{VERSION}", "InferenceService", namespace, name)
    status = dict((fresh or body).get("status") or {})
    old_rollout = dict(status.get("rollout") or {})
    now = datetime.now(UTC)

    target, blocked, features = await resolve(ctx, spec, namespace)
    deployments = await observe_deployments(ctx, namespace, name)
    known = [old_rollout.get(k) for k in ("stable", "candidate", "previous")]
    if target is not None:
        known.append(target.model_dump(by_alias=True, exclude_none=True))
    due = measurement_due(spec, old_rollout, now)
    measurement = await measure(ctx, due, namespace, name, now) if due else None
    seen = Observed(now=now, desired=target, blocked=blocked,
                    ready=ready_replicas(deployments, name, known),
                    total=total_replicas(spec, deployments, name, old_rollout.get("stable")),
                    measurement=measurement, previous_phase=status.get("phase"))
    decision = decide(spec, old_rollout, seen)
    rollout = dict(decision.rollout)
    events = list(outcome.events) + decision.events
    conditions = outcome.status["conditions"]

    serving = Serving(image=ctx.config.image, mlflow_uri=ctx.config.mlflow_uri,
                      s3_endpoint=ctx.config.s3_endpoint, bucket=ctx.config.s3_bucket,
                      object_store_secret=ctx.config.default_object_store_secret)
    children = build_children(dict(body), spec, decision.plan, serving)
    routed = None
    for child in children:
        if child["kind"] == "HTTPRoute":
            support = route_support(await ctx.kube.get(
                "apiextensions.k8s.io/v1", "CustomResourceDefinition", None, HTTPROUTE_CRD), child)
            if not support.ok:
                routed = (False, support.reason, support.message)
                continue
            try:
                await ctx.kube.apply(child)
                routed = (True, "Routed", f"HTTPRoute {name} weights {decision.plan.weights} "
                                          f"({support.message})")
            except Exception as error:  # noqa: BLE001 - e.g. the CRD removed meanwhile: a condition
                routed = (False, "GatewayAPIUnavailable", f"{type(error).__name__}: {error}")
        else:
            await ctx.kube.apply(child)
    wanted = {(c["kind"], c["metadata"]["name"]) for c in children}
    for deployment in deployments:
        if ("Deployment", deployment) not in wanted:
            await ctx.kube.delete("apps/v1", "Deployment", namespace, deployment)
    for service in await ctx.kube.list("v1", "Service", namespace, selector_string(name)):
        if ("Service", service["metadata"]["name"]) not in wanted:
            await ctx.kube.delete("v1", "Service", namespace, service["metadata"]["name"])

    try:
        events += await sync_aliases(ctx, rollout)
        conditions = set_condition(conditions, make_condition(
            "RegistryReachable", True, "Reachable", ctx.config.mlflow_uri or "", generation))
    except RegistryUnavailable as error:
        conditions = set_condition(conditions, make_condition(
            "RegistryReachable", False, "RegistryUnavailable", str(error)[:1024], generation))

    stable = rollout.get("stable")
    stable_ready = seen.ready.get(stable["modelVersion"], 0) if stable else 0
    model_ok = target is not None and not (blocked and blocked[0] == "ModelNotApproved")
    conditions = set_condition(conditions, make_condition(
        "ModelResolved", model_ok, "Resolved" if model_ok else blocked[0],
        f"{target.model_version} (MLflow version {target.mlflow_version})" if model_ok
        else blocked[1], generation))
    if features is not None:
        conditions = set_condition(conditions, make_condition("FeaturesReady", *features,
                                                              generation))
    if routed is not None:
        conditions = set_condition(conditions, make_condition("TrafficRouted", *routed,
                                                              generation))
    conditions = set_condition(conditions, make_condition(
        "Ready", stable_ready > 0, "Serving" if stable_ready else "NotServing",
        decision.message if stable_ready == 0 else
        f"{stable['modelVersion']}: {stable_ready} ready replica(s)", generation))
    conditions = set_condition(conditions, make_condition(
        "Progressing", decision.phase == "Progressing", decision.reason or decision.phase,
        decision.message, generation))
    events += transitions(status.get("conditions"), conditions, ANNOUNCED[INFO.kind])

    monitoring = await reconcile_monitoring(ctx, dict(body), spec, serving,
                                            stable["modelVersion"] if stable else None, status,
                                            conditions)
    conditions, events = monitoring.conditions, events + monitoring.events
    quality = await reconcile_quality(ctx, dict(body), spec, serving, status, conditions)
    conditions, events = quality.conditions, events + quality.events
    retraining = await reconcile_retrain_policy(ctx, dict(body), spec, status,
                                                ctx.config.resync_seconds)
    events += retraining.events
    candidate = rollout.get("candidate")
    new_status = {
        **outcome.status,
        "phase": decision.phase,
        "message": decision.message,
        "conditions": conditions,
        "url": url(name, namespace),
        "selector": f"{SERVICE_LABEL}={name}",
        "replicas": sum((d.get("status") or {}).get("readyReplicas") or 0
                        for d in deployments.values()),
        "stableVersion": stable["modelVersion"] if stable else None,
        "canaryVersion": candidate["modelVersion"] if candidate else None,
        "canaryWeight": rollout.get("weight") if candidate else None,
        "currentStep": rollout.get("step") if candidate else None,
        "rollout": with_deletions(old_rollout, rollout),
        **monitoring.status,
        **retraining.status,
    }
    if decision.analysis is not None:
        new_status["analysis"] = decision.analysis
    requeue = [after for after in (decision.requeue, retraining.requeue_after)
               if after is not None]
    return Outcome(status=new_status, events=events, requeue_after=min(requeue, default=None))


@kopf.on.event(GROUP, VERSION, "modelversions", id="inferenceservices.modelversion-changed")
async def model_version_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """Wake the services a ModelVersion can affect, so an approval starts a ``latestApproved``
    rollout (or unblocks a pinned one) at once instead of at the next resync."""
    ctx: Context = memo.ctx
    name, model = body.metadata.name, (body.get("spec") or {}).get("modelName")
    for service in await ctx.kube.list(f"{GROUP}/{VERSION}", "InferenceService",
                                       body.metadata.namespace, ""):
        ref = (service.get("spec") or {}).get("model") or {}
        if ref.get("modelVersion") == name or ref.get("modelName") == model:
            memo.controllers.wake(service["metadata"]["uid"])


register(INFO, reconcile)
