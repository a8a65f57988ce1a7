"""InferenceService monitoring: the drift monitor's children and the retraining a drift report
triggers — the closed loop's operator side.

The InferenceService reconcile calls ``reconcile_monitoring`` once it knows the served (stable)
ModelVersion; the pure parts live in ``builders.driftmonitor`` and ``reconcilers.retrain``.

Decisions where the issue is silent:

- The reference defaults to the *stable* ModelVersion's ``status.lineage.dataUri``: drift is
  measured against the data the model that answers most traffic was trained on, and it follows a
  promotion.
- The monitor pod reads S3 with the serving pods' own credentials: the InferenceService's
  ``spec.objectStore`` Secret (or the operator's default), plus the ``AWS_*`` entries of
  ``spec.runtime.env`` and the operator's S3 endpoint unless those entries name one. No new Secret
  to configure.
- Removal is remembered in status: the ``DriftMonitor`` condition exists exactly while the
  monitor's children may exist, so services without monitoring cost no extra API call.
- A drift report that still awaits a retraining decision wakes the service at once (the monitor
  pod patches status only, which would otherwise wait for the periodic resync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import kopf

from ferry.api import GROUP, VERSION
from ferry.api.inferenceservice import InferenceServiceSpec, Retrain
from ferry.builders.driftmonitor import build_drift_monitor, monitor_name
from ferry.builders.inferenceservice import Serving, prediction_log_uri
from ferry.controllers._worker import Context
from ferry.reconcilers.outcome import Event
from ferry.reconcilers.retrain import decide_retrain, retrain_labels
from ferry.status import ANNOUNCED, find_condition, make_condition, set_condition, transitions

CONDITION = "DriftMonitor"
S3_ENV_PREFIX = "AWS_"
S3_ENDPOINT_ENV = "AWS_ENDPOINT_URL_S3"
REPORTS_PREFIX = "drift-reports"


@dataclass(frozen=True)
class Monitoring:
    """What monitoring adds to one reconcile: status fields, the conditions, Events."""

    status: dict
    conditions: list[dict]
    events: list[Event] = field(default_factory=list)


def report_uri(bucket: str, namespace: str, name: str) -> str:
    return f"s3://{bucket}/{REPORTS_PREFIX}/{namespace}/{name}"


def monitor_env(spec: InferenceServiceSpec, s3_endpoint: str | None) -> list[dict]:
    """S3 access for the monitor pod: the serving pods' ``AWS_*`` env, and the operator's
    endpoint unless they set their own."""
    found = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.runtime.env
             if e.name.startswith(S3_ENV_PREFIX)]
    if s3_endpoint and all(e["name"] != S3_ENDPOINT_ENV for e in found):
        found.insert(0, {"name": S3_ENDPOINT_ENV, "value": s3_endpoint})
    return found


def retrain_spec(spec: InferenceServiceSpec | None) -> Retrain | None:
    drift = spec.monitoring.drift if spec is not None else None
    return drift.on_drift.retrain if drift is not None and drift.on_drift is not None else None


def wants_retrain(spec: dict) -> bool:
    """``spec.monitoring.drift.onDrift.retrain`` is set (on the raw spec, as watch events carry it)."""
    drift = (spec.get("monitoring") or {}).get("drift") or {}
    return bool((drift.get("onDrift") or {}).get("retrain"))


def awaits_decision(drift: dict | None, record: dict | None) -> bool:
    """A drifted report the retraining trigger has not decided on yet."""
    drift = drift or {}
    return drift.get("verdict") == "Drifted" and bool(drift.get("reportUri")) \
        and drift["reportUri"] != (record or {}).get("reportUri")


def selector(labels: dict[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(labels.items()))


def lineage(mv: dict | None) -> dict:
    return ((mv or {}).get("status") or {}).get("lineage") or {}


async def delete_monitor(ctx: Context, namespace: str, child: str) -> None:
    """A monitor's children (``builders.monitors``), all named ``child``."""
    await ctx.kube.delete("batch/v1", "CronJob", namespace, child)
    await ctx.kube.delete("rbac.authorization.k8s.io/v1", "RoleBinding", namespace, child)
    await ctx.kube.delete("rbac.authorization.k8s.io/v1", "Role", namespace, child)
    await ctx.kube.delete("v1", "ServiceAccount", namespace, child)


async def apply_monitor(ctx: Context, infsvc: dict, spec: InferenceServiceSpec, serving: Serving,
                        served: dict | None) -> tuple[bool, str, str]:
    """Apply the monitor's children; the ``DriftMonitor`` condition's (status, reason, message)."""
    namespace, name = infsvc["metadata"]["namespace"], infsvc["metadata"]["name"]
    logs = prediction_log_uri(spec, serving, namespace, name)
    if logs is None:
        return False, "NoPredictionLog", ("spec.monitoring.drift reads the prediction log: set "
                                          "spec.predictionLogging")
    try:
        children = build_drift_monitor(infsvc, spec, serving.image, logs,
                                       report_uri(serving.bucket, namespace, name),
                                       lineage(served).get("dataUri"),
                                       monitor_env(spec, serving.s3_endpoint),
                                       serving.object_store_secret)
    except ValueError as error:
        return False, "NoReference", str(error)
    for child in children:
        await ctx.kube.apply(child)
    reference = spec.monitoring.drift.reference or lineage(served).get("dataUri")
    return True, "Scheduled", (f"CronJob {monitor_name(name)} ({spec.monitoring.drift.schedule}) "
                               f"compares {logs} with {reference}")


async def decide(ctx: Context, infsvc: dict, retrain: Retrain, served: dict | None,
                 status: dict) -> tuple[dict, list[Event]]:
    """Decide on the newest drift report and create the retraining run it asks for."""
    namespace, name = infsvc["metadata"]["namespace"], infsvc["metadata"]["name"]
    api = f"{GROUP}/{VERSION}"
    runs = await ctx.kube.list(api, "TrainingRun", namespace, selector(retrain_labels(name)))
    pipeline = lineage(served).get("featurePipeline") or ((served or {}).get("spec") or {}).get(
        "features")
    output = None
    if pipeline:
        found = await ctx.kube.get(api, "FeaturePipeline", namespace, pipeline)
        output = ((found or {}).get("status") or {}).get("latestOutputUri")
    decision = decide_retrain(infsvc, status.get("drift"), retrain, status.get("retrain"), runs,
                              datetime.now(UTC), pipeline, output)
    if decision.run is not None:
        # Server-side apply creates it; the name is new (numbered past every existing run), so
        # an apply after a lost status write converges on the same run instead of failing.
        await ctx.kube.apply(decision.run)
    return ({"retrain": decision.status} if decision.status is not None else {}), decision.events


async def reconcile_monitoring(ctx: Context, infsvc: dict, spec: InferenceServiceSpec,
                               serving: Serving, served_name: str | None, status: dict,
                               conditions: list[dict]) -> Monitoring:
    """The drift monitor for ``spec.monitoring.drift`` (or its removal) and the retraining
    decision; ``served_name`` is the stable ModelVersion, ``status`` the status as read."""
    namespace, name = infsvc["metadata"]["namespace"], infsvc["metadata"]["name"]
    generation = infsvc["metadata"].get("generation")
    if spec.monitoring.drift is None:
        if find_condition(conditions, CONDITION) is None:
            return Monitoring({}, conditions)
        await delete_monitor(ctx, namespace, monitor_name(name))
        return Monitoring({}, [c for c in conditions if c.get("type") != CONDITION],
                          [Event("Normal", "DriftMonitorRemoved",
                                 f"spec.monitoring.drift removed: deleted {monitor_name(name)}")])

    served = await ctx.kube.get(f"{GROUP}/{VERSION}", "ModelVersion", namespace, served_name) \
        if served_name else None
    updated = set_condition(conditions, make_condition(
        CONDITION, *await apply_monitor(ctx, infsvc, spec, serving, served), generation))
    events = transitions(conditions, updated, ANNOUNCED["InferenceService"])

    fields: dict = {}
    retrain = retrain_spec(spec)
    if retrain is not None and awaits_decision(status.get("drift"), status.get("retrain")):
        fields, decided = await decide(ctx, infsvc, retrain, served, status)
        events += decided
    return Monitoring(fields, updated, events)


@kopf.on.event(GROUP, VERSION, "inferenceservices", id="inferenceservices.drift-reported")
async def drift_reported(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """The monitor pod patched ``status.drift``: decide on retraining now, not at the resync."""
    status = body.get("status") or {}
    if wants_retrain(body.get("spec") or {}) and awaits_decision(status.get("drift"),
                                                                 status.get("retrain")):
        memo.controllers.wake(body.metadata.uid)
