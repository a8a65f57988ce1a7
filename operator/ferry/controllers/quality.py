"""InferenceService ``spec.monitoring.quality``: the quality monitor's children, the
``QualityHealthy`` condition and the ``ferry_model_quality`` gauge from ``status.quality``.

The pod judges (``reconcilers.quality``) and patches ``status.quality`` itself; the operator only
schedules it and turns what it reported into the condition and metrics. Decisions where the issue
is silent:

- Two conditions: ``QualityMonitor`` says whether the monitor is scheduled (and why not, e.g. no
  prediction log), and exists exactly while its children may exist (as ``DriftMonitor``);
  ``QualityHealthy`` is the verdict: True Healthy, False Degraded, Unknown Inconclusive or
  before the first run.
- A report newer than the condition wakes the service at once (the pod patches status only,
  which would otherwise wait for the periodic resync).
"""

from __future__ import annotations

import kopf

from ferry.api import GROUP, VERSION
from ferry.api.inferenceservice import InferenceServiceSpec
from ferry.builders.inferenceservice import Serving, prediction_log_uri
from ferry.builders.qualitymonitor import build_quality_monitor, monitor_name
from ferry.controllers._worker import Context
from ferry.controllers.drift import Monitoring, delete_monitor, monitor_env
from ferry.observability.metrics import QUALITY
from ferry.reconcilers.outcome import Event
from ferry.reconcilers.quality import CONDITION as HEALTHY, health
from ferry.status import ANNOUNCED, find_condition, make_condition, set_condition, transitions

CONDITION = "QualityMonitor"


async def apply_monitor(ctx: Context, infsvc: dict, spec: InferenceServiceSpec,
                        serving: Serving) -> tuple[bool, str, str]:
    """Apply the monitor's children; the ``QualityMonitor`` condition's (status, reason, message)."""
    namespace, name = infsvc["metadata"]["namespace"], infsvc["metadata"]["name"]
    logs = prediction_log_uri(spec, serving, namespace, name)
    if logs is None:
        return False, "NoPredictionLog", ("spec.monitoring.quality joins labels with the prediction "
                                          "log: set spec.predictionLogging")
    for child in build_quality_monitor(infsvc, spec, serving.image, logs,
                                       monitor_env(spec, serving.s3_endpoint),
                                       serving.object_store_secret):
        await ctx.kube.apply(child)
    return True, "Scheduled", (f"CronJob {monitor_name(name)} ({spec.monitoring.quality.schedule}) "
                               f"joins {logs}labels/ with {logs}")


def health_condition(quality: dict | None, generation: int | None) -> dict:
    return make_condition(HEALTHY, *health(quality), generation)


def stale(status: dict) -> bool:
    """``status.quality`` says something the ``QualityHealthy`` condition does not yet."""
    found = find_condition(status.get("conditions"), HEALTHY)
    expected = health(status.get("quality"))
    return found is None or (found["status"], found["reason"], found.get("message")) != expected


async def reconcile_quality(ctx: Context, infsvc: dict, spec: InferenceServiceSpec,
                            serving: Serving, status: dict, conditions: list[dict]) -> Monitoring:
    """The quality monitor for ``spec.monitoring.quality`` (or its removal); ``status`` as read."""
    namespace, name = infsvc["metadata"]["namespace"], infsvc["metadata"]["name"]
    uid, generation = infsvc["metadata"]["uid"], infsvc["metadata"].get("generation")
    if spec.monitoring.quality is None:
        QUALITY.forget(uid)
        if find_condition(conditions, CONDITION) is None:
            return Monitoring({}, conditions)
        await delete_monitor(ctx, namespace, monitor_name(name))
        return Monitoring({}, [c for c in conditions if c.get("type") not in (CONDITION, HEALTHY)],
                          [Event("Normal", "QualityMonitorRemoved",
                                 f"spec.monitoring.quality removed: deleted {monitor_name(name)}")])
    quality = status.get("quality")
    updated = set_condition(conditions, make_condition(
        CONDITION, *await apply_monitor(ctx, infsvc, spec, serving), generation))
    updated = set_condition(updated, health_condition(quality, generation))
    QUALITY.set(uid, namespace, name, quality)
    return Monitoring({}, updated, transitions(conditions, updated, ANNOUNCED["InferenceService"]))


@kopf.on.event(GROUP, VERSION, "inferenceservices", id="inferenceservices.quality-reported")
async def quality_reported(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """The monitor pod patched ``status.quality``: set the condition now, not at the resync."""
    status = body.get("status") or {}
    if ((body.get("spec") or {}).get("monitoring") or {}).get("quality") and status.get("quality") \
            and stale(status):
        memo.controllers.wake(body.metadata.uid)
