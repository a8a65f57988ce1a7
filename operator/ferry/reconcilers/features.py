"""Whether a FeaturePipeline's output may be used, as every consumer decides it (pure).

An InferenceService holds a rollout and a TrainingRun holds its start on the same answer: the
pipeline must exist and be ``Ready`` (a validated output is published and, with ``freshness``,
fresh). The answer also carries the published output, ``status.latestOutputUri``, which is what a
run that starts now trains on.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ferry.reconcilers.usage import served_model_versions
from ferry.status import find_condition


@dataclass(frozen=True)
class Features:
    pipeline: str
    ready: bool
    reason: str  # FeaturesReady | FeaturesNotReady
    message: str
    uri: str | None = None

    def condition(self) -> tuple[bool, str, str]:
        """(status, reason, message) of the consumer's ``FeaturesReady`` condition."""
        return self.ready, self.reason, self.message


def published(pipeline: dict | None) -> tuple[str | None, str | None]:
    """(Ready status, latest output URI) of a pipeline object: what its consumers read of it,
    so a change of either is what should wake them."""
    status = (pipeline or {}).get("status") or {}
    ready = find_condition(status.get("conditions"), "Ready")
    return (ready or {}).get("status"), status.get("latestOutputUri")


def readiness(name: str, pipeline: dict | None) -> Features:
    """The readiness of FeaturePipeline ``name`` (``pipeline``: the object, None when absent)."""
    status = (pipeline or {}).get("status") or {}
    ready = find_condition(status.get("conditions"), "Ready")
    uri = status.get("latestOutputUri")
    if pipeline is not None and ready and ready["status"] == "True" and uri:
        return Features(name, True, "FeaturesReady", f"FeaturePipeline {name} is Ready", uri)
    why = "not found" if pipeline is None else (ready or {}).get("message") or "not Ready"
    return Features(name, False, "FeaturesNotReady", f"FeaturePipeline {name}: {why}", uri)


def consumers(pipeline: str, objects: Iterable[tuple[str, str, dict]]) -> list[str]:
    """The uids among ``objects`` ((uid, kind, body) of the pipeline's namespace) that read this
    pipeline's readiness: TrainingRuns not started yet that name it, and InferenceServices that
    pin, follow or serve a ModelVersion trained on it."""
    objects = list(objects)
    trained_on = [body for _, kind, body in objects if kind == "ModelVersion"
                  and (body.get("spec") or {}).get("features") == pipeline]
    versions = {mv["metadata"]["name"] for mv in trained_on}
    models = {(mv.get("spec") or {}).get("modelName") for mv in trained_on}
    found = []
    for uid, kind, body in objects:
        spec = body.get("spec") or {}
        if kind == "TrainingRun":
            if spec.get("features") == pipeline and not (body.get("status") or {}).get("jobName"):
                found.append(uid)
        elif kind == "InferenceService" and versions:
            ref = spec.get("model") or {}
            if ref.get("modelVersion") in versions or ref.get("modelName") in models or \
                    served_model_versions(body) & versions:
                found.append(uid)
    return found
