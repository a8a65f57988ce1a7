"""InferenceService ``spec.retrainPolicy``: read what its triggers look at, decide
(``reconcilers.retrain_policy``), create the run, and wake the service when a monitor reports.

Observations: the served (stable) ModelVersion's lineage (training snapshot, training metrics,
FeaturePipeline) and that pipeline's spec and last successful run. The snapshot's row count is
known only while the pipeline still publishes it; otherwise the policy compares with the rows it
recorded at the last retrain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import kopf

from ferry.api import GROUP, VERSION
from ferry.api.inferenceservice import InferenceServiceSpec
from ferry.controllers._worker import Context
from ferry.controllers.drift import lineage, selector
from ferry.reconcilers.outcome import Event
from ferry.reconcilers.retrain import retrain_labels
from ferry.reconcilers.retrain_policy import Observed, awaits_decision, decide_policy, next_wake

API = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Retraining:
    status: dict
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def observe(served: dict | None, stable: dict | None, pipeline: dict | None) -> Observed:
    """The policy's observations from the served ModelVersion (``stable``: ``status.rollout.stable``)
    and the FeaturePipeline it was trained on."""
    trained = lineage(served)
    pipeline_status = (pipeline or {}).get("status") or {}
    last = pipeline_status.get("lastSuccessfulRun") or {}
    output = pipeline_status.get("latestOutputUri") or last.get("outputUri")
    data_uri = trained.get("dataUri")
    return Observed(
        served_versions=tuple(v for v in ((stable or {}).get("mlflowVersion"),
                                          (stable or {}).get("modelVersion")) if v),
        training_data_uri=data_uri,
        training_rows=last.get("rows") if data_uri and data_uri in (output, last.get("outputUri"))
        else None,
        training_metrics=trained.get("metrics") or {},
        feature_pipeline=(pipeline or {}).get("metadata", {}).get("name"),
        pipeline_spec=(pipeline or {}).get("spec"),
        pipeline_output_uri=output,
        pipeline_run_id=last.get("runId"),
        pipeline_rows=last.get("rows"))


async def reconcile_retrain_policy(ctx: Context, infsvc: dict, spec: InferenceServiceSpec,
                                   status: dict, resync: float) -> Retraining:
    """``status`` as read (fresh); the schedule's next slot is a requeue only when it comes
    before the ``resync``."""
    policy = spec.retrain_policy
    if policy is None:
        return Retraining({})
    namespace, name = infsvc["metadata"]["namespace"], infsvc["metadata"]["name"]
    stable = (status.get("rollout") or {}).get("stable")
    served = await ctx.kube.get(API, "ModelVersion", namespace, stable["modelVersion"]) \
        if stable else None
    pipeline_name = lineage(served).get("featurePipeline") or \
        ((served or {}).get("spec") or {}).get("features")
    pipeline = await ctx.kube.get(API, "FeaturePipeline", namespace, pipeline_name) \
        if pipeline_name else None
    runs = await ctx.kube.list(API, "TrainingRun", namespace, selector(retrain_labels(name)))
    now = datetime.now(UTC)
    decision = decide_policy({**infsvc, "status": status}, policy, status.get("retrainPolicy"),
                             runs, observe(served, stable, pipeline), now)
    if decision.run is not None:
        # As for onDrift.retrain: the name is numbered past every existing run, so an apply
        # after a lost status write converges on the same run.
        await ctx.kube.apply(decision.run)
    wake = next_wake(policy, now)
    return Retraining({"retrainPolicy": decision.status} if decision.status is not None else {},
                      decision.events, wake if wake is not None and wake < resync else None)


@kopf.on.event(GROUP, VERSION, "inferenceservices", id="inferenceservices.retrain-policy-report")
async def report_arrived(body: kopf.Body, memo: kopf.Memo, **_) -> None:
    """A monitor patched ``status.drift`` or ``status.quality``: decide now, not at the resync."""
    if (body.get("spec") or {}).get("retrainPolicy") and awaits_decision(body.get("status") or {}):
        memo.controllers.wake(body.metadata.uid)
