"""InferenceService: serving with rollouts, prediction logging, drift and quality monitoring."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from ferry.api.common import (
    OBJECT_STORE, ApiModel, Cron, Duration, EnvVar, FerryStatus, FreeForm, Label, Name,
    ObjectStoreRef, Probe, Resources, Rule, Slice, StatusModel, Text, Toleration)

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
    readiness_probe: Probe | None = None
    liveness_probe: Probe | None = None


class Autoscaling(ApiModel):
    rules = (Rule("self.minReplicas <= self.maxReplicas",
                  "autoscaling.minReplicas must not exceed autoscaling.maxReplicas",
                  lambda m: m.min_replicas <= m.max_replicas),)

    min_replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    max_replicas: Annotated[int, Field(ge=1, le=1000)]
    target_cpu_utilization: Percent = 80


class Query(ApiModel):
    """Custom PromQL; the first sample of the result is compared with ``threshold`` (pass when
    ``value op threshold`` holds). Placeholders: ``$namespace``, ``$service``, ``$model``,
    ``$version`` (the candidate's MLflow version), ``$stableVersion`` and ``$interval``."""

    name: Annotated[str, Field(min_length=1, max_length=63)]
    query: Annotated[str, Field(min_length=1, max_length=4096)]
    op: Literal[">", ">=", "<", "<="]
    threshold: float


class PredictionDrift(ApiModel):
    method: Literal["jensenShannon", "psi"] = "jensenShannon"
    threshold: Annotated[float, Field(gt=0)] = 0.1


class Analysis(ApiModel):
    """Prometheus checks of the candidate, measured every ``interval`` over the last ``interval``.

    A step completes only after a passing measurement taken at that step; more than
    ``failureLimit`` failed measurements roll back; no data or no Prometheus is Inconclusive,
    which holds the rollout (never promotes) until a measurement is conclusive again."""

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
    """Preview Deployment + ``<name>-preview`` Service; the active Service's selector switches in
    one update; the old colour stays scaled for ``scaleDownDelaySeconds`` (instant rollback)."""

    preview_replicas: Annotated[int, Field(ge=1, le=1000)] | None = None
    auto_promote: bool = False
    analysis: Analysis | None = None
    scale_down_delay_seconds: Annotated[int, Field(ge=0)] = 600


class Shadow(ApiModel):
    """The candidate gets a mirrored share of requests and never answers clients. After
    ``duration`` with passing analysis it is promoted (``autoPromote``) or waits for
    ``ferry promote``."""

    mirror_percent: Percent = 100
    analysis: Analysis | None = None
    duration: Duration = "10m"
    auto_promote: bool = False


HeaderName = Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]


class Variant(ApiModel):
    """One arm of an experiment: a ModelVersion and its share of the assigned users. Two variants
    may serve the same ModelVersion (an A/A test, which checks the set-up itself)."""

    name: Label = Field(description="What the override header and the status call this variant.")
    model_version: Name
    weight: Annotated[int, Field(ge=1, le=99)] = Field(description="Percent of assigned users.")


class Assignment(ApiModel):
    """Where the sticky key (e.g. a user id) of a request is read; the same key gets the same
    variant on every replica and after restarts. A request without one is served by the control
    and not counted."""

    rules = (Rule("[has(self.header), has(self.cookie), has(self.bodyField)].filter(x, x).size() == 1",
                  "assignment takes exactly one of header, cookie, bodyField",
                  lambda m: sum(x is not None for x in (m.header, m.cookie, m.body_field)) == 1),)

    header: HeaderName | None = Field(None, description="A request header, e.g. x-user-id.")
    cookie: HeaderName | None = Field(None, description="A cookie of the Cookie header.")
    body_field: Annotated[str, Field(min_length=1, max_length=253)] | None = Field(None, description=(
        "A field of the JSON body: a top-level key, else OIP v2 parameters.<field>, else an OIP v2 "
        "input of that name whose rows all hold one value."))


class ExperimentMetric(ApiModel):
    """The primary business metric, from the feedback labels joined to the predictions."""

    name: Annotated[str, Field(min_length=1, max_length=253)] = Field("label", description=(
        "The label files' column holding the outcome (a number or boolean): `label`, what the "
        "feedback endpoint stores, or another column such as `converted` or `revenue`."))
    aggregation: Literal["mean", "userMean"] = Field("mean", description=(
        "mean: over labelled predictions (a 0/1 outcome gives the conversion rate); userMean: each "
        "user's outcomes averaged first, then over users, the unit the assignment randomises, so "
        "users with many requests do not shrink the confidence interval."))
    higher_is_better: bool = True


class Experiment(ApiModel):
    """An A/B/n test: users are split between 2 to 5 variants by a hash of a sticky key, and each
    variant after the first (the control, usually the stable version) is compared with it on a
    business metric, behind guardrails. The outcome (status.experiment): Winner (a treatment is
    promoted with autoPromote, else by `ferry promote`; the control may win too), NoDifference,
    Inconclusive (maxDuration), Invalid (sample-ratio mismatch) or Stopped (guardrail breach);
    every outcome but a winning treatment keeps the control."""

    rules = (
        Rule("self.variants.map(v, v.weight).sum() == 100", "variant weights must sum to 100",
             lambda m: sum(v.weight for v in m.variants) == 100),
        Rule("self.variants.all(v, self.variants.exists_one(w, w.name == v.name))",
             "variant names must be unique",
             lambda m: len({v.name for v in m.variants}) == len(m.variants)),
    )

    variants: Annotated[list[Variant], Field(min_length=2, max_length=5)] = Field(
        description="The first is the control every other variant is compared with.")
    assignment: Assignment
    override_header: HeaderName = Field("ferry-variant", description=(
        "A request naming a variant in this header gets that variant (for testing); such requests "
        "are not counted in the experiment."))
    metric: ExperimentMetric = ExperimentMetric()
    guardrails: Analysis = Field(Analysis(), description=(
        "Prometheus checks of every treatment variant, as in a canary's analysis: more than "
        "failureLimit failed measurements of one stop the experiment and keep the control."))
    alpha: Annotated[float, Field(gt=0, lt=0.5)] = Field(0.05, description=(
        "Significance level for the whole experiment (split between the treatments, Bonferroni)."))
    minimum_detectable_effect: Annotated[float, Field(gt=0)] = Field(description=(
        "The smallest difference of the metric (in its units: 0.01 = one point of conversion) "
        "worth acting on; a confidence interval inside +-this is NoDifference."))
    srm_alpha: Annotated[float, Field(gt=0, lt=0.5)] = Field(0.001, description=(
        "Sample-ratio-mismatch level: assigned users this unlikely under the weights (chi-square) "
        "make the experiment Invalid."))
    test: Literal["sequential", "fixedHorizon"] = Field("sequential", description=(
        "sequential: mSPRT always-valid p-values, may decide at any time; fixedHorizon: a Welch "
        "z-test once every variant has the sample size the effect, alpha and 80% power need."))
    min_samples_per_variant: Annotated[int, Field(ge=10, le=100_000_000)] = Field(100, description=(
        "No decision before every variant has this many metric samples."))
    max_duration: Duration = Field("14d", description="Undecided by then: Inconclusive.")
    auto_promote: bool = Field(False, description=(
        "Promote a winning treatment at once; otherwise it waits for `ferry promote`."))


class Strategy(ApiModel):
    rules = (Rule("(has(self.canary) ? 1 : 0) + (has(self.blueGreen) ? 1 : 0) + "
                  "(has(self.shadow) ? 1 : 0) + (has(self.experiment) ? 1 : 0) <= 1",
                  "set at most one of strategy.canary, strategy.blueGreen, strategy.shadow or "
                  "strategy.experiment",
                  lambda m: sum(x is not None for x in (m.canary, m.blue_green, m.shadow,
                                                        m.experiment)) <= 1),)

    canary: Canary | None = None
    blue_green: BlueGreen | None = None
    shadow: Shadow | None = None
    experiment: Experiment | None = None


class GatewayRef(ApiModel):
    name: Name
    namespace: Name | None = None
    section_name: Annotated[str, Field(max_length=253)] | None = None


class PredictionLogging(ApiModel):
    sample_rate: Annotated[float, Field(ge=0, le=1)] = 0.1
    bucket: Annotated[str, Field(max_length=63)] | None = None
    prefix: Annotated[str, Field(max_length=512)] | None = None


class Retrain(ApiModel):
    template: FreeForm = Field(description=(
        "A TrainingRun spec for the retraining run; without objectStore it gets the "
        "InferenceService's."))
    cooldown: Duration = "24h"
    max_concurrent: Annotated[int, Field(ge=1, le=10)] = 1


def _time_zone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {value!r}") from None
    return value


def _cron(value: str) -> str:
    from ferry.reconcilers.cron import parse

    parse(value)
    return value


class DriftTrigger(ApiModel):
    """A Drifted report of spec.monitoring.drift (status.drift)."""


class SkewTrigger(ApiModel):
    """Training-serving skew: a Drifted report whose reference was the served model's training
    snapshot (the drift monitor's default when monitoring.drift.reference is unset)."""


class Windows(ApiModel):
    """``breaching`` of the last ``of`` evaluations (M of N; CEL cannot name a field ``n``)."""

    rules = (Rule("self.breaching <= self.of", "windows.breaching must not exceed windows.of",
                  lambda w: w.breaching <= w.of),)

    breaching: Annotated[int, Field(ge=1, le=100)] = Field(
        1, description="Breaching evaluations needed.")
    of: Annotated[int, Field(ge=1, le=100)] = Field(1, description="Of the last this many evaluations.")


LOWER_IS_BETTER = ("logLoss", "calibrationError", "mae", "rmse", "mape")


class PerformanceTrigger(ApiModel):
    """The served version's metric in status.quality breaches in m of the last n quality
    evaluations (each new quality report is one)."""

    rules = (Rule("[has(self.min), has(self.max), has(self.dropFromTraining)]"
                  ".filter(x, x).size() == 1",
                  "performance takes exactly one of min, max, dropFromTraining",
                  lambda p: sum(x is not None for x in (p.min, p.max, p.drop_from_training)) == 1),)

    metric: Literal[QualityMetricName, "outcome"]
    min: float | None = Field(None, description="Breach below this value.")
    max: float | None = Field(None, description="Breach above this value.")
    drop_from_training: Annotated[float, Field(ge=0)] | None = Field(None, description=(
        "Breach when the metric is this much worse than the champion's training metric of the "
        "same name (lower for most metrics, higher for logLoss, calibrationError, mae, rmse, "
        "mape)."))
    windows: Windows = Windows()
    use_estimate: bool = Field(True, description=(
        "An estimated value (labels still pending) counts; false: such an evaluation never "
        "breaches."))


class NewDataTrigger(ApiModel):
    """The champion's FeaturePipeline published a run with at least minRows more rows than the
    snapshot the champion was trained on."""

    min_rows: Annotated[int, Field(ge=1)]


class ScheduleTrigger(ApiModel):
    """Once per cron slot; slots before the policy first saw this schedule do not fire."""

    cron: Annotated[Cron, AfterValidator(_cron)] = Field(description=(
        "5 fields (lists, ranges, steps) or @hourly/@daily/@weekly/@monthly/@yearly."))
    time_zone: Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_time_zone)] = \
        "UTC"


class OnDemandTrigger(ApiModel):
    """Written by `ferry retrain` (or Git): each new id retrains once."""

    id: Annotated[str, Field(min_length=1, max_length=64)]
    reason: Text | None = None


class RequirementsTrigger(ApiModel):
    """The template or the champion's FeaturePipeline spec changed since the champion's training
    run or the last retrain (a hash in status; the first one seen is recorded, not acted on)."""


class RetrainTriggers(ApiModel):
    rules = (Rule("has(self.drift) || has(self.skew) || has(self.performance) || "
                  "has(self.newData) || has(self.schedule) || has(self.onDemand) || "
                  "has(self.requirements)", "retrainPolicy.triggers needs at least one trigger",
                  lambda t: any(getattr(t, name) is not None for name in type(t).model_fields)),)

    drift: DriftTrigger | None = None
    skew: SkewTrigger | None = None
    performance: PerformanceTrigger | None = None
    new_data: NewDataTrigger | None = None
    schedule: ScheduleTrigger | None = None
    on_demand: OnDemandTrigger | None = None
    requirements: RequirementsTrigger | None = None


class RetrainPolicy(Retrain):
    """Retraining on any of several triggers. Triggers firing together start one run; all share
    the cooldown, maxConcurrent and dailyBudget, and each firing is decided once."""

    daily_budget: Annotated[int, Field(ge=1, le=100)] = Field(
        3, description="At most this many runs created in any 24 hours.")
    triggers: RetrainTriggers


class OnDrift(ApiModel):
    retrain: Retrain | None = None


DriftMethod = Literal["ks", "wasserstein", "psi", "chiSquare", "jensenShannon"]
ColumnName = Annotated[str, Field(min_length=1, max_length=253)]


class DriftMonitor(ApiModel):
    """A scheduled comparison of the prediction log of the last ``window`` with the reference.

    Per column the method defaults to Evidently's rule (reference <= 1000 rows: ``ks`` /
    ``chiSquare`` at p < 0.05; above: ``wasserstein`` normalised by the reference std /
    ``jensenShannon`` at 0.1); ``methods`` and ``thresholds`` override it per column, key ``*``
    for every column. The same object (as JSON) configures ``ferry drift compare --config``."""

    schedule: Annotated[str, Field(max_length=128)] = "0 * * * *"
    window: Duration = "1h"
    features: Annotated[list[ColumnName], Field(max_length=256)] = Field(
        [], description="Columns to monitor; default: every reference column except `exclude`, "
                        "prediction* and ferry_* columns.")
    exclude: Annotated[list[ColumnName], Field(max_length=256)] = Field(
        [], description="Reference columns never monitored (labels, ids).")
    methods: dict[str, DriftMethod] = {}
    thresholds: dict[str, float] = Field(
        {}, description="p-value (ks, chiSquare) or distance (wasserstein, psi, jensenShannon).")
    drift_share: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="The dataset drifts when this share of monitored columns drifts.")
    min_rows: Annotated[int, Field(ge=1)] = Field(
        100, description="Fewer rows in the window or the reference: Inconclusive, never drift.")
    null_rate_change: Annotated[float, Field(gt=0, le=1)] = Field(
        0.1, description="A column whose share of nulls moves by more than this drifts.")
    reference: Annotated[str, Field(max_length=1024)] | None = Field(
        None, description="Default: the training snapshot in the ModelVersion's lineage.")
    on_drift: OnDrift | None = None


CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "rocAuc", "logLoss",
                          "calibrationError")
REGRESSION_METRICS = ("mae", "rmse", "mape")
OUTCOME = "outcome"
"""The business metric's name (the mean of ``QualityMonitor.outcome``) in thresholds and status."""
THRESHOLD_KEYS = (*CLASSIFICATION_METRICS, *REGRESSION_METRICS, OUTCOME)
QualityMetricName = Literal["accuracy", "precision", "recall", "f1", "rocAuc", "logLoss",
                            "calibrationError", "mae", "rmse", "mape"]


def _cel_list(names: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{name}'" for name in names) + "]"


class QualityThreshold(ApiModel):
    """The healthy range of one metric: below ``min`` or above ``max`` is Degraded."""

    min: float | None = None
    max: float | None = None


class QualityMonitor(ApiModel):
    """A scheduled join of the labels (feedback and label files under ``<prediction log>/labels/``)
    with the predictions logged in the last ``window``, and the model's realized quality per
    version and per slice.

    A label counts when it became known within ``joinWindow`` after its prediction. A version or
    slice with at least ``minLabels`` labelled rows reports realized metrics and is Degraded when
    one leaves its ``thresholds`` range, else Healthy; with fewer it is Inconclusive and, for a
    classifier that logs class probabilities, reports the CBPE estimate over the rows still
    waiting for labels (``estimated: true``) where one exists."""

    rules = (
        Rule("!has(self.task) || !has(self.metrics) || self.task != 'regression' || self.metrics.all(m, m in "
             f"{_cel_list(REGRESSION_METRICS)})",
             "a regression task computes only mae, rmse and mape",
             lambda q: q.task != "regression" or set(q.metrics) <= set(REGRESSION_METRICS)),
        Rule("!has(self.task) || !has(self.metrics) || self.task != 'classification' || "
             "self.metrics.all(m, m in "
             f"{_cel_list(CLASSIFICATION_METRICS)})",
             "a classification task computes no regression metrics",
             lambda q: q.task != "classification" or set(q.metrics) <= set(CLASSIFICATION_METRICS)),
        Rule(f"!has(self.thresholds) || self.thresholds.all(k, k in {_cel_list(THRESHOLD_KEYS)})",
             "thresholds are keyed by a metric name or outcome",
             lambda q: set(q.thresholds) <= set(THRESHOLD_KEYS)),
        # Declared here, not on QualityThreshold: the apiserver names a map entry by its key.
        Rule("!has(self.thresholds) || self.thresholds.all(k, has(self.thresholds[k].min) || "
             "has(self.thresholds[k].max))", "a threshold sets min, max or both",
             lambda q: all(t.min is not None or t.max is not None for t in q.thresholds.values())),
        Rule("!has(self.thresholds) || self.thresholds.all(k, !has(self.thresholds[k].min) || "
             "!has(self.thresholds[k].max) || self.thresholds[k].min <= self.thresholds[k].max)",
             "a threshold's min must not exceed its max",
             lambda q: all(t.min is None or t.max is None or t.min <= t.max
                           for t in q.thresholds.values())),
        Rule("!has(self.thresholds) || !('outcome' in self.thresholds) || has(self.outcome)",
             "a threshold on outcome needs the outcome column",
             lambda q: OUTCOME not in q.thresholds or q.outcome is not None),
        Rule("!has(self.slices) || self.slices.all(a, self.slices.exists_one(b, b.name == a.name))",
             "slice names must be unique",
             lambda q: len({s.name for s in q.slices}) == len(q.slices)),
    )

    schedule: Cron = "0 * * * *"
    window: Duration = Field("24h", description="Predictions logged in this long before the run.")
    join_window: Duration = Field("7d", description=(
        "How late a label may arrive after its prediction and still count."))
    task: Literal["classification", "regression"] | None = Field(None, description=(
        "Default: classification when the log has class probabilities (ferry_proba_*) or "
        "non-float predictions, else regression."))
    prediction_column: ColumnName = Field("prediction", description="The logged prediction.")
    positive_class: Annotated[str, Field(max_length=253)] | None = Field(None, description=(
        "Classification: the class precision, recall, F1, ROC AUC and calibration are about; "
        "default: the greatest class seen (1 of 0/1)."))
    metrics: Annotated[list[QualityMetricName], Field(max_length=16)] = Field([], description=(
        "Reported metrics; default: every metric of the task. A metric with a threshold is "
        "always reported."))
    slices: Annotated[list[Slice], Field(max_length=20)] = []
    outcome: ColumnName | None = Field(None, description=(
        "A business outcome column (label files' extra column or a logged one, e.g. clicked); "
        "its mean over the labelled rows is reported as the metric `outcome`."))
    thresholds: Annotated[dict[str, QualityThreshold], Field(max_length=16)] = Field(
        {}, description="Per metric name (or `outcome`): the healthy range.")
    min_labels: Annotated[int, Field(ge=1)] = Field(
        100, description="Fewer labelled rows in a version or slice: Inconclusive.")

    def reported_metrics(self, task: str) -> list[str]:
        """The task's metrics to report: those listed (default all) plus those with a threshold."""
        chosen = self.metrics or list(REGRESSION_METRICS if task == "regression"
                                      else CLASSIFICATION_METRICS)
        return chosen + [name for name in self.thresholds if name != OUTCOME and name not in chosen]


class Monitoring(ApiModel):
    drift: DriftMonitor | None = None
    quality: QualityMonitor | None = None


class Traffic(ApiModel):
    gateway_ref: GatewayRef | None = Field(
        None, description="Split and mirror with a Gateway API HTTPRoute instead of replica ratio.")


class RolloutControl(ApiModel):
    """Manual control as spec fields, so Git can drive it as well as ``ferry promote|abort|
    pause|resume``. ``promote``/``abort`` name the candidate ModelVersion they act on, so a
    stale value never affects a later rollout."""

    paused: bool = Field(False, description="Hold the rollout at its current step.")
    promote: Name | None = Field(
        None, description="Promote this candidate now, skipping remaining steps and analysis.")
    abort: Name | None = Field(
        None, description="Roll this candidate back and keep the stable version.")


def _on_drift_retrain(spec: InferenceServiceSpec) -> bool:
    drift = spec.monitoring.drift
    return drift is not None and drift.on_drift is not None and drift.on_drift.retrain is not None


def _triggers(spec: InferenceServiceSpec, *names: str) -> bool:
    policy = spec.retrain_policy
    return policy is not None and any(getattr(policy.triggers, n) is not None for n in names)


HAS_MONITORING = "has(self.monitoring) && has(self.monitoring.{})"


class InferenceServiceSpec(ApiModel):
    rules = (
        Rule("!has(self.retrainPolicy) || !(" + HAS_MONITORING.format("drift") + " && "
             "has(self.monitoring.drift.onDrift) && has(self.monitoring.drift.onDrift.retrain))",
             "set spec.retrainPolicy or spec.monitoring.drift.onDrift.retrain, not both",
             lambda s: s.retrain_policy is None or not _on_drift_retrain(s)),
        Rule("!has(self.retrainPolicy) || !(has(self.retrainPolicy.triggers.drift) || "
             "has(self.retrainPolicy.triggers.skew)) || " + HAS_MONITORING.format("drift"),
             "retrainPolicy.triggers.drift and skew need spec.monitoring.drift",
             lambda s: not _triggers(s, "drift", "skew") or s.monitoring.drift is not None),
        Rule("!has(self.retrainPolicy) || !has(self.retrainPolicy.triggers.performance) || "
             + HAS_MONITORING.format("quality"),
             "retrainPolicy.triggers.performance needs spec.monitoring.quality",
             lambda s: not _triggers(s, "performance") or s.monitoring.quality is not None),
    )

    model: ModelRef
    runtime: Runtime = Runtime()
    object_store: ObjectStoreRef | None = Field(None, description=(
        OBJECT_STORE + " Here: the serving pods, the drift monitor's pods and, unless its "
        "template names its own, the retraining TrainingRun."))
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    autoscaling: Autoscaling | None = None
    strategy: Strategy = Strategy()
    traffic: Traffic = Traffic()
    rollout: RolloutControl = RolloutControl()
    prediction_logging: PredictionLogging | None = None
    monitoring: Monitoring = Monitoring()
    retrain_policy: RetrainPolicy | None = Field(None, description=(
        "Retraining on drift, skew, performance, new data, a schedule, demand or new "
        "requirements; replaces monitoring.drift.onDrift.retrain."))
    min_available: Annotated[int, Field(ge=0)] | None = Field(None, description="PodDisruptionBudget.")
    topology_spread: bool = True
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = {}
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = []


class AnalysisResult(StatusModel):
    name: str
    value: float | None = None
    threshold: float | None = None
    op: str | None = None
    verdict: Literal["Passed", "Failed", "Inconclusive"]
    time: str | None = None
    version: str | None = None
    message: str | None = None


class ServedModel(StatusModel):
    """One ModelVersion as served: what its Deployment is built from."""

    model_version: str
    mlflow_version: str | None = None
    model_name: str | None = None
    uri: str | None = None


class RolledBack(StatusModel):
    model_version: str
    model: ServedModel | None = None
    reason: str
    message: str = ""
    at: str | None = None


class RolloutState(StatusModel):
    """Everything needed to continue a rollout after an operator restart."""

    strategy: str | None = None
    stable: ServedModel | None = None
    candidate: ServedModel | None = None
    previous: ServedModel | None = None
    step: int | None = None
    step_started_at: str | None = None
    step_ready_at: str | None = None
    weight: int | None = None
    promoting: bool = False
    analysis_failures: int = 0
    last_analysis_at: str | None = None
    last_verdict: str | None = None
    promoted_at: str | None = None
    post_promotion_until: str | None = None
    scale_down_at: str | None = None
    champion: str | None = Field(None, description="model/version we set the champion alias to")
    challenger: str | None = None
    rolled_back: RolledBack | None = None
    active: ServedModel | None = Field(None, description=(
        "The version the client Service selects (unset: every serving pod, in a replica-ratio "
        "canary)."))
    left: ServedModel | None = Field(None, description=(
        "The version the client Service last switched away from; it keeps its pods a few "
        "seconds after switchedAt, until every endpoint has followed."))
    switched_at: str | None = None


class DriftSummary(StatusModel):
    """Written by the drift monitor's pod (its own ServiceAccount may patch only this status)."""

    time: str | None = None
    window: str | None = None
    verdict: Literal["Drifted", "NoDrift", "Inconclusive"] | None = None
    drifted_features: dict[str, float] = {}
    drift_share: float | None = None
    features_checked: int | None = None
    rows: int | None = None
    reference_rows: int | None = None
    reference_uri: str | None = None
    run_id: str | None = None
    message: str | None = None
    report_uri: str | None = None
    html_report_uri: str | None = None


class RetrainRecord(StatusModel):
    """What the retraining trigger decided about the newest drift report (see reconcilers/retrain)."""

    report_uri: str | None = Field(None, description="The drift report last acted on.")
    decision: Literal["Triggered", "Cooldown", "MaxConcurrent", "InvalidTemplate"] | None = None
    message: str | None = None
    count: int = Field(0, description="Retraining runs created so far (names <name>-retrain-<n>).")
    last_run: str | None = None
    last_trigger_time: str | None = None
    drifted_features: dict[str, float] = {}


class PerformanceWindow(StatusModel):
    """One quality evaluation as the performance trigger judged it."""

    window: str = Field(description="The quality report's runId (or lastRunAt).")
    breached: bool
    value: float | None = None
    estimated: bool = False


class RetrainPolicyStatus(StatusModel):
    """What spec.retrainPolicy decided and what its triggers remember (see
    reconcilers/retrain_policy)."""

    decision: Literal["Triggered", "Cooldown", "MaxConcurrent", "DailyBudget",
                      "InvalidTemplate"] | None = None
    message: str | None = None
    triggers: list[str] = Field([], description="The triggers of the last decision.")
    count: int = Field(0, description="Retraining runs created so far (names <name>-retrain-<n>).")
    last_run: str | None = None
    last_trigger_time: str | None = None
    decided: Annotated[list[str], Field(max_length=50)] = Field(
        [], description="Dedup keys decided on, newest last (the last 50).")
    last_keys: dict[str, str] = Field({}, description="Per trigger, the last key decided on.")
    run_times: list[str] = Field([], description="Creation times of the runs of the last 24h.")
    performance_windows: list[PerformanceWindow] = []
    requirements_hash: str | None = None
    data_rows: int | None = Field(None, description=(
        "Rows of the snapshot the champion (or the last retrain) was trained on, as far as known."))
    schedule: str | None = Field(None, description="The cron and time zone seen since scheduleSince.")
    schedule_since: str | None = None
    drift_report: str | None = Field(None, description="The drift report last evaluated.")
    quality_window: str | None = Field(None, description="The quality report last evaluated.")


class Interval(StatusModel):
    lower: float
    upper: float


class VariantStatus(StatusModel):
    """One variant's numbers; difference, interval and p-value are against the control."""

    name: str
    model_version: str | None = None
    requests: int = 0
    users: int = 0
    samples: int = Field(0, description="Metric samples: labelled predictions, or users for userMean.")
    metric: float | None = None
    difference: float | None = Field(None, description="metric minus the control's metric")
    confidence_interval: Interval | None = Field(None, description="of the difference")
    p_value: float | None = None
    guardrail_failures: int = 0


class ExperimentStatus(StatusModel):
    outcome: Literal["Running", "Winner", "NoDifference", "Inconclusive", "Invalid",
                     "Stopped"] | None = None
    winner: str | None = Field(None, description="The winning variant (may be the control).")
    reason: str | None = None
    message: str | None = None
    started_at: str | None = None
    ended_at: str | None = None
    salt: str | None = Field(None, description="Hash salt of the assignment (new per experiment).")
    srm_p_value: float | None = None
    required_samples: int | None = Field(None, description="fixedHorizon: per variant.")
    variants: Annotated[list[VariantStatus], Field(max_length=5)] = []


QualityVerdict = Literal["Healthy", "Degraded", "Inconclusive"]


class QualityCoverage(StatusModel):
    labelled: int = 0
    predicted: int = 0
    ratio: float | None = None


class QualityMetricValue(StatusModel):
    name: str
    value: float | None = None
    estimated: bool = Field(False, description=(
        "A CBPE estimate over the rows still waiting for labels, not a realized value."))
    message: str | None = Field(None, description="Why it is undefined, or the range it left.")


class QualityGroup(StatusModel):
    """One version, or one slice of a version."""

    verdict: QualityVerdict
    coverage: QualityCoverage = QualityCoverage()
    metrics: list[QualityMetricValue] = []


class QualitySlice(QualityGroup):
    name: str


class QualityVersion(QualityGroup):
    version: str
    slices: list[QualitySlice] = []
    slices_omitted: int = 0


class QualitySummary(StatusModel):
    """Written by the quality monitor's pod (its own ServiceAccount may patch only this status)."""

    last_run_at: str | None = None
    run_id: str | None = None
    window: str | None = None
    join_window: str | None = None
    task: str | None = None
    verdict: QualityVerdict | None = None
    message: str | None = None
    versions: list[QualityVersion] = []
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
    message: str | None = None
    rollout: RolloutState | None = None
    drift: DriftSummary | None = None
    retrain: RetrainRecord | None = None
    retrain_policy: RetrainPolicyStatus | None = None
    experiment: ExperimentStatus | None = None
    quality: QualitySummary | None = None
