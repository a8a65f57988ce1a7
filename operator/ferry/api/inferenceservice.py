"""InferenceService: serving with rollouts, prediction logging and drift monitoring."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ferry.api.common import (
    ApiModel, Duration, EnvVar, FerryStatus, FreeForm, Name, Resources, Rule, StatusModel)

Percent = Annotated[int, Field(ge=0, le=100)]


class ModelRef(ApiModel):
    """Pin a ModelVersion (GitOps) or follow the newest approved version of a model (CD)."""

    rules = (
        Rule("has(self.modelVersion) != has(self.modelName)",
             "exactly one of model.modelVersion or model.modelName must be set",
             lambda m: (m.model_version is None) != (m.model_name is None)),
        Rule("!has(self.policy) || has(self.modelName)", "model.policy needs model.modelName",
             lambda m: m.policy is None or m.model_name is not None),
    )

    model_version: Name | None = None
    model_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    policy: Literal["latestApproved"] | None = None


class Runtime(ApiModel):
    image: Annotated[str, Field(max_length=512)] | None = Field(
        None, description="Default: Ferry's image running `ferry serve`.")
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = []
    args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=256)] = []
    env: Annotated[list[EnvVar], Field(max_length=128)] = []
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    resources: Resources = Resources()
    readiness_probe: FreeForm | None = None
    liveness_probe: FreeForm | None = None


class Autoscaling(ApiModel):
    rules = (Rule("self.minReplicas <= self.maxReplicas",
                  "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
                  lambda m: m.min_replicas <= m.max_replicas),)

    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)]
    target_cpu_utilization: Percent = 80


class Query(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=63)]
    query: Annotated[str, Field(min_length=1, max_length=4096)]
    op: Literal[">", ">=", "<", "<="]
    threshold: float


class PredictionDrift(ApiModel):
    method: Literal["jensenShannon", "psi"] = "jensenShannon"
    threshold: Annotated[float, Field(gt=0)] = 0.1


class Analysis(ApiModel):
    interval: Duration = "30s"
    templates: Annotated[list[Literal["errorRate", "latencyP99"]], Field(max_length=8)] = [
        "errorRate", "latencyP99"]
    max_error_rate: Annotated[float, Field(ge=0, le=1)] = 0.01
    max_latency_p99_seconds: Annotated[float, Field(gt=0)] = 1.0
    queries: Annotated[list[Query], Field(max_length=16)] = []
    prediction_drift: PredictionDrift | None = None
    failure_limit: Annotated[int, Field(ge=0, le=100)] = 1


class Pause(ApiModel):
    duration: Duration | None = Field(None, description="Absent: wait until promoted.")


class CanaryStep(ApiModel):
    rules = (Rule("has(self.setWeight) != has(self.pause)",
                  "each canary step sets exactly one of setWeight or pause",
                  lambda m: (m.set_weight is None) != (m.pause is None)),)

    set_weight: Percent | None = None
    pause: Pause | None = None


class Canary(ApiModel):
    steps: Annotated[list[CanaryStep], Field(min_length=1, max_length=32)]
    analysis: Analysis | None = None
    post_promotion: Duration | None = Field(None, description="Watch window after promotion.")


class BlueGreen(ApiModel):
    preview_replicas: Annotated[int, Field(ge=1, le=1000)] | None = None
    auto_promote: bool = False
    analysis: Analysis | None = None
    scale_down_delay_seconds: Annotated[int, Field(ge=0)] = 600


class Shadow(ApiModel):
    mirror_percent: Percent = 100
    analysis: Analysis | None = None


class Strategy(ApiModel):
    rules = (Rule("(has(self.canary) ? 1 : 0) + (has(self.blueGreen) ? 1 : 0) + "
                  "(has(self.shadow) ? 1 : 0) <= 1",
                  "set at most one of strategy.canary, strategy.blueGreen or strategy.shadow",
                  lambda m: sum(x is not None for x in (m.canary, m.blue_green, m.shadow)) <= 1),)

    canary: Canary | None = None
    blue_green: BlueGreen | None = None
    shadow: Shadow | None = None


class GatewayRef(ApiModel):
    name: Name
    namespace: Name | None = None
    section_name: Annotated[str, Field(max_length=253)] | None = None


class PredictionLogging(ApiModel):
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    bucket: Annotated[str, Field(max_length=63)] | None = None
    prefix: Annotated[str, Field(max_length=512)] | None = None


class Retrain(ApiModel):
    template: FreeForm = Field(description="A TrainingRun spec for the retraining run.")
    cooldown: Duration = "24h"
    max_concurrent: Annotated[int, Field(ge=1, le=10)] = 1


class OnDrift(ApiModel):
    retrain: Retrain | None = None


class DriftMonitor(ApiModel):
    schedule: Annotated[str, Field(max_length=128)] = "0 * * * *"
    window: Duration = "1h"
    features: Annotated[list[Annotated[str, Field(max_length=253)]], Field(max_length=256)] = []
    thresholds: dict[str, float] = {}
    reference: Annotated[str, Field(max_length=1024)] | None = Field(
        None, description="Default: the training snapshot in the ModelVersion's lineage.")
    on_drift: OnDrift | None = None


class Monitoring(ApiModel):
    drift: DriftMonitor | None = None


class Traffic(ApiModel):
    gateway_ref: GatewayRef | None = None


class InferenceServiceSpec(ApiModel):
    model: ModelRef
    runtime: Runtime = Runtime()
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    autoscaling: Autoscaling | None = None
    strategy: Strategy = Strategy()
    traffic: Traffic = Traffic()
    prediction_logging: PredictionLogging | None = None
    monitoring: Monitoring = Monitoring()
    min_available: Annotated[int, Field(ge=0)] | None = Field(None, description="PodDisruptionBudget.")
    topology_spread: bool = True
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = {}
    tolerations: Annotated[list[FreeForm], Field(max_length=32)] = []


class AnalysisResult(StatusModel):
    name: str
    value: float | None = None
    threshold: float | None = None
    verdict: Literal["Passed", "Failed", "Inconclusive"]
    time: str | None = None


class DriftSummary(StatusModel):
    time: str | None = None
    window: str | None = None
    verdict: Literal["Drifted", "NoDrift", "Inconclusive"] | None = None
    drifted_features: dict[str, float] = {}
    report_uri: str | None = None
    html_report_uri: str | None = None


class InferenceServiceStatus(FerryStatus):
    replicas: int | None = None
    selector: str | None = None
    url: str | None = None
    stable_version: str | None = None
    canary_version: str | None = None
    current_step: int | None = None
    canary_weight: int | None = None
    analysis: Annotated[list[AnalysisResult], Field(max_length=64)] = []
    drift: DriftSummary | None = None
