"""ModelVersion: an MLflow registry version with lineage, gates and approval."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ferry.api.common import (
    ApiModel, FerryStatus, Name, Rule, StatusModel, StringMap, Text, immutable)

MODEL_SOURCE = r"^(runs:/[^/]+/.+|models:/.+|s3://[^/]+/.+)$"


class MetricGate(ApiModel):
    metric: Annotated[str, Field(min_length=1, max_length=256)]
    op: Literal[">", ">=", "<", "<="]
    value: float


class BeatChampion(ApiModel):
    metric: Annotated[str, Field(min_length=1, max_length=256)]
    goal: Literal["maximize", "minimize"] = "maximize"
    min_delta: Annotated[float, Field(ge=0)] = 0.0


class Gates(ApiModel):
    metrics: Annotated[list[MetricGate], Field(max_length=32)] = []
    beat_champion: BeatChampion | None = Field(None, description=(
        "Beat the run metric of the version holding the champion alias by minDelta. A candidate "
        "without the metric fails; with no champion, or a champion without the metric, the gate "
        "passes and says it did not compare."))
    features_ready: bool = True
    signature: bool = False


class Approval(ApiModel):
    """Human approval as a spec field, so it can go through Git review (``ferry approve``)."""

    rules = (Rule("!has(self.comment) || has(self.approvedBy)", "approval.comment needs approvedBy",
                  lambda m: m.comment is None or m.approved_by is not None),)

    required: bool = False
    approved_by: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    comment: Text | None = None


class ModelVersionSpec(ApiModel):
    rules = (Rule("has(self.source) != has(self.trainingRunRef)",
                  "exactly one of source or trainingRunRef must be set",
                  lambda m: (m.source is None) != (m.training_run_ref is None)),)

    model_name: Annotated[str, Field(min_length=1, max_length=256,
                                     json_schema_extra=immutable("modelName"))]
    source: Annotated[str, Field(max_length=1024, pattern=MODEL_SOURCE)] | None = Field(
        None, description="runs:/<id>/<path>, models:/<name>/<v> or s3://...")
    training_run_ref: Name | None = Field(None, description="TrainingRun providing source and metrics.")
    features: Name | None = Field(None, description="FeaturePipeline the model was trained on.")
    description: Text | None = None
    tags: StringMap = {}
    gates: Gates = Gates()
    approval: Approval = Approval()
    deletion_policy: Literal["Retain", "Delete"] = "Retain"


class GateResult(StatusModel):
    name: str
    observed: str | None = None
    threshold: str | None = None
    verdict: Literal["Passed", "Failed", "Pending"]
    message: str | None = None


class Lineage(StatusModel):
    training_run: str | None = None
    run_id: str | None = None
    experiment: str | None = None
    feature_pipeline: str | None = None
    feature_version: str | None = None
    data_uri: str | None = None
    image: str | None = None
    parameters: dict[str, str] = {}
    metrics: dict[str, float] = {}
    retrain_triggers: list[str] = Field([], description=(
        "The retrainPolicy triggers that started the training run; their evidence is the run's "
        "ferry.dev/retrain-evidence annotation and the registry version's tag."))


class ApprovalRecord(StatusModel):
    by: str
    at: str
    comment: str | None = None


class ModelVersionStatus(FerryStatus):
    mlflow_version: str | None = None
    source: str | None = None
    lineage: Lineage | None = None
    gates: Annotated[list[GateResult], Field(max_length=64)] = []
    approval: ApprovalRecord | None = None
    served_by: Annotated[list[str], Field(max_length=64)] = []
