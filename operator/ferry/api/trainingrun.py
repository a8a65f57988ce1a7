"""TrainingRun: a (distributed) GPU training Job tracked in MLflow, optionally a sweep."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ferry.api.common import (
    OBJECT_STORE, ApiModel, Container, Duration, FerryStatus, FreeForm, Label, Name,
    ObjectStoreRef, Quantity, Rule, SecretRef, StatusModel, StringMap, Text, Toleration)
from ferry.api.modelversion import Approval, Gates


class MlflowTracking(ApiModel):
    experiment: Annotated[str, Field(min_length=1, max_length=256)] | None = Field(
        None, description="Experiment name; default: the namespace.")
    tracking_uri: Annotated[str, Field(max_length=1024, pattern=r"^https?://[^\s/]+(/\S*)?$")] | None = \
        Field(None, description=(
            "An MLflow tracking server (http or https) the operator and the pods reach; default: "
            "the operator's configured MLflow. Not a path: MLflow would read that as a file "
            "store on the operator's own disk."))
    credentials: SecretRef | None = Field(
        None, description="Secret whose keys become the trainer's environment (envFrom), e.g. "
                          "MLFLOW_TRACKING_TOKEN. Kept next to spec.objectStore (S3 keys belong "
                          "there): loaded after it, so its keys win.")


class Checkpoint(ApiModel):
    uri: Annotated[str, Field(max_length=1024, pattern=r"^s3://[^/]+/.*$")]
    credentials: SecretRef | None = Field(
        None, description="Secret whose keys become the trainer's environment (envFrom). Kept "
                          "next to spec.objectStore for a checkpoint store with its own "
                          "credentials: loaded after it, so its keys win.")


class SweepParameter(ApiModel):
    """One searched parameter: a list of values, or a min..max range (log-uniform with logScale).
    A grid search takes gridPoints evenly (geometrically with logScale) spaced points of a range;
    a random search samples it."""

    rules = (
        Rule("has(self.values) != (has(self.min) && has(self.max))",
             "a sweep parameter needs either values or min and max",
             lambda m: (m.values is not None) != (m.min is not None and m.max is not None)),
        Rule("!has(self.min) || !has(self.max) || self.min < self.max", "min must be below max",
             lambda m: m.min is None or m.max is None or m.min < m.max),
        Rule("!has(self.logScale) || !self.logScale || (has(self.min) && self.min > 0.0)",
             "logScale needs a positive min",
             lambda m: not m.log_scale or (m.min is not None and m.min > 0)),
    )

    name: Annotated[str, Field(min_length=1, max_length=128)]
    values: Annotated[list[Annotated[str, Field(max_length=256)]], Field(max_length=128)] | None = None
    min: float | None = None
    max: float | None = None
    log_scale: bool = False
    grid_points: Annotated[int, Field(ge=2, le=100)] = 3
    integer: bool = Field(False, description="Round sampled values to whole numbers.")


class Objective(ApiModel):
    metric: Annotated[str, Field(min_length=1, max_length=256)]
    goal: Literal["minimize", "maximize"] = "maximize"


class Sweep(ApiModel):
    """A hyper-parameter search: one child TrainingRun <run>-t<i> per trial, at most parallelism
    at once; trial i's parameters depend only on the sweep, the seed and i."""

    rules = (Rule("!has(self.parallelism) || self.parallelism <= self.maxTrials",
                  "sweep.parallelism must not exceed sweep.maxTrials",
                  lambda m: m.parallelism <= m.max_trials),)

    algorithm: Literal["grid", "random"] = "grid"
    parameters: Annotated[list[SweepParameter], Field(min_length=1, max_length=16)]
    max_trials: Annotated[int, Field(ge=1, le=1000)]
    parallelism: Annotated[int, Field(ge=1, le=100)] = 1
    objective: Objective
    seed: int | None = Field(None, description="Random search seed; default: from the uid.")


class Register(ApiModel):
    """Register the trained model as a ModelVersion named <modelName>-<run> (made a valid object
    name) when the run succeeds; a sweep registers its best trial. Gates and approval are the
    ModelVersion's."""

    model_name: Annotated[str, Field(min_length=1, max_length=256)]
    artifact_path: Annotated[str, Field(max_length=256)] = "model"
    description: Text | None = None
    tags: StringMap = {}
    gates: Gates = Gates()
    approval: Approval = Approval()


class TrainingRunSpec(Container):
    workers: Annotated[int, Field(ge=1, le=256, description="Nodes; >1 runs torchrun.")] = 1
    features: Name | None = Field(None, description=(
        "FeaturePipeline the code reads: the run starts once it is Ready (FeaturesReady) and "
        "gets its latest output as FERRY_FEATURES_URI; also lineage."))
    parameters: StringMap = {}
    object_store: ObjectStoreRef | None = Field(None, description=OBJECT_STORE)
    mlflow: MlflowTracking = MlflowTracking()
    checkpoint: Checkpoint | None = None
    node_selector: StringMap = {}
    tolerations: Annotated[list[Toleration], Field(max_length=32)] = []
    affinity: FreeForm | None = None
    priority_class_name: Name | None = None
    service_account_name: Name | None = None
    image_pull_secrets: Annotated[list[SecretRef], Field(max_length=16)] = []
    shm_size: Quantity | None = Field(None, description="Memory-backed /dev/shm for DataLoaders.")
    pod_security: Literal["restricted", "baseline"] = Field("restricted", description=(
        "The Pod Security level the run's pods meet. `restricted` (default): non-root, no "
        "privilege escalation, every capability dropped. `baseline`: for images that must run "
        "as root (the image's own user and default capabilities); the namespace must admit "
        "`baseline` pods."))
    queue_name: Label | None = Field(None, description="Kueue LocalQueue; the Job starts suspended.")
    backoff_limit: Annotated[int, Field(ge=0, le=100, description=(
        "Pod retries of a single-worker run."))] = 3
    max_restarts: Annotated[int, Field(ge=0, le=100, description=(
        "Whole-job restarts of a distributed run after a worker failure; disruptions "
        "(preemption, drain) restart it without counting."))] = 3
    active_deadline_seconds: Annotated[int, Field(ge=1)] | None = None
    non_retryable_exit_codes: Annotated[
        list[Annotated[int, Field(ge=1, le=255)]], Field(max_length=32)] = []
    scheduling_timeout: Duration | None = Field(
        None, description="Fail with InsufficientGPU/Unschedulable if not all workers are "
                          "placed at the same time within this time.")
    sweep: Sweep | None = None
    registration: Register | None = Field(None, alias="register")
    description: Text | None = None


class Progress(StatusModel):
    step: int | None = None
    epoch: int | None = None
    metrics: dict[str, float] = {}


class Trial(StatusModel):
    name: str
    parameters: dict[str, str] = {}
    phase: str | None = None
    objective: float | None = None
    mlflow_run_id: str | None = None


class TrainingRunStatus(FerryStatus):
    job_name: str | None = None
    mlflow_run_id: str | None = None
    experiment_id: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    attempts: int | None = None
    restarts: int | None = None
    features_uri: str | None = None
    progress: Progress | None = None
    metrics: dict[str, float] = {}
    trials: Annotated[list[Trial], Field(max_length=1000)] = []
    best_trial: str | None = None
    best_objective: float | None = None
    model_version: str | None = None
    gpus: int | None = None
    message: str | None = None



