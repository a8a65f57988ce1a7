"""The ferry.dev/v1alpha1 API: one pydantic spec and status model per kind, plus CRD metadata."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from ferry.api.featurepipeline import FeaturePipelineSpec, FeaturePipelineStatus
from ferry.api.inferenceservice import InferenceServiceSpec, InferenceServiceStatus
from ferry.api.modelversion import ModelVersionSpec, ModelVersionStatus
from ferry.api.trainingrun import TrainingRunSpec, TrainingRunStatus

GROUP = "ferry.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
CATEGORIES = ("ferry", "mlops")


def column(name: str, json_path: str, type_: str = "string", priority: int = 0,
           description: str | None = None) -> dict:
    col = {"name": name, "type": type_, "jsonPath": json_path}
    if priority:
        col["priority"] = priority
    if description:
        col["description"] = description
    return col


PHASE = column("Phase", ".status.phase")
AGE = column("Age", ".metadata.creationTimestamp", "date")


@dataclass(frozen=True)
class KindInfo:
    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec_model: type[BaseModel]
    status_model: type[BaseModel]
    summary_condition: str  # Ready for long-lived kinds, Succeeded for run-to-completion ones
    printer_columns: tuple[dict, ...] = ()
    scale: bool = False


KINDS: dict[str, KindInfo] = {
    info.kind: info for info in (
        KindInfo(
            "FeaturePipeline", "featurepipelines", "featurepipeline", ("fp",),
            FeaturePipelineSpec, FeaturePipelineStatus, "Ready",
            (column("FeatureSet", ".spec.featureSet"), column("Version", ".spec.version"),
             column("Schedule", ".spec.schedule"), PHASE,
             column("Last-Success", ".status.lastSuccessfulRun.time", "date"),
             column("Output", ".status.latestOutputUri", priority=1), AGE)),
        KindInfo(
            "TrainingRun", "trainingruns", "trainingrun", ("tr",),
            TrainingRunSpec, TrainingRunStatus, "Succeeded",
            (PHASE, column("Workers", ".spec.workers", "integer"),
             column("GPUs", ".spec.resources.gpus", "integer",
                    description="GPUs per worker"),
             column("Step", ".status.progress.step", "integer"),
             column("MLflow-Run", ".status.mlflowRunId", priority=1),
             column("Best", ".status.bestTrial", priority=1),
             column("Objective", ".status.bestObjective", "number",
                    description="Objective of the best sweep trial"),
             column("Restarts", ".status.restarts", "integer", priority=1), AGE)),
        KindInfo(
            "ModelVersion", "modelversions", "modelversion", ("mv",),
            ModelVersionSpec, ModelVersionStatus, "Ready",
            (column("Model", ".spec.modelName"), column("Version", ".status.mlflowVersion"),
             PHASE, column("Features", ".spec.features", priority=1),
             column("Source", ".status.source", priority=1), AGE)),
        KindInfo(
            "InferenceService", "inferenceservices", "inferenceservice", ("infsvc",),
            InferenceServiceSpec, InferenceServiceStatus, "Ready",
            (column("Stable", ".status.stableVersion"), column("Canary", ".status.canaryVersion"),
             column("Weight", ".status.canaryWeight", "integer"),
             column("Step", ".status.currentStep", "integer"), PHASE,
             column("Replicas", ".status.replicas", "integer"),
             column("URL", ".status.url", priority=1), AGE),
            scale=True),
    )
}


def kind_by_plural(plural: str) -> KindInfo:
    for info in KINDS.values():
        if info.plural == plural:
            return info
    raise KeyError(plural)


def kind_named(word: str) -> KindInfo:
    """The kind a ``kubectl``-style name means: short name, plural, singular or kind, optionally
    qualified with the group (``infsvc``, ``inferenceservices.ferry.dev``, ``InferenceService``)."""
    base = word.removesuffix(f".{GROUP}").lower()
    for info in KINDS.values():
        if base in (info.plural, info.singular, info.kind.lower(), *info.short_names):
            return info
    raise KeyError(word)


def parse_spec(kind: str, spec: dict) -> BaseModel:
    """Validate a raw spec; raises pydantic.ValidationError naming the offending fields."""
    return KINDS[kind].spec_model.model_validate(spec)
