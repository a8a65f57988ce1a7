"""TrainingRun → a Job (one worker) or an Indexed Job + headless Service (torchrun); a sweep →
one child TrainingRun per trial; a succeeded run with ``register`` → a ModelVersion.

The parameters file (``FERRY_PARAMETERS_FILE``) is a downward-API projection of a pod-template
annotation rather than a ConfigMap: the same file, one object and one API write less per run,
and it can never drift from what the Job started with.

Whole-job restart of distributed runs: a collective (NCCL/gloo all-reduce) cannot survive the loss
of one worker, and a lone replacement worker would hang until a timeout. So the Indexed Job of a
``workers > 1`` run is one *attempt*: ``backoffLimit: 0`` and a podFailurePolicy that fails the Job
at once on any worker failure or disruption, which makes the Job controller stop every other
worker. The operator then creates the next attempt as a new Job with a deterministic name
(``<run>`` first, then ``<run>-a<n>``), labelled ``ferry.dev/attempt=<n>`` and annotated with what
caused it, and every worker gets ``FERRY_ATTEMPT=<n>`` and resumes from the newest checkpoint.
The Jobs themselves are the record (no in-memory state, no duplicate after an operator restart):
the newest attempt is the highest label, and only restarts caused by failures count against
``maxRestarts``. Single-worker runs keep the Job's own pod retries (``backoffLimit``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from ferry.api.trainingrun import TrainingRunSpec
from ferry.builders.labels import child_labels, owner_reference
from ferry.builders.objectstore import object_store_env_from
from ferry.builders.scheduling import GPU, tolerations

KIND = "TrainingRun"
MASTER_PORT = 29500
PARAMETERS_DIR = "/etc/ferry"
PARAMETERS_ANNOTATION = "ferry.dev/parameters"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# Set on a Job whose workers could not all be placed in time: the Job stays suspended and the
# run stays Failed with this reason, even across operator restarts (the Job is the record).
GAVE_UP = "ferry.dev/gave-up"
ATTEMPT_LABEL = "ferry.dev/attempt"
RESTART_CAUSE = "ferry.dev/restart-cause"
SWEEP_LABEL = "ferry.dev/sweep"
TRIAL_LABEL = "ferry.dev/trial"
# On a trial: the sweep's MLflow run, so the trial's run is created nested under it.
PARENT_RUN_ANNOTATION = "ferry.dev/mlflow-parent-run-id"


@dataclass(frozen=True)
class Tracking:
    """Where the code logs: decided by the operator before the Job exists."""

    tracking_uri: str | None = None
    experiment: str | None = None
    run_id: str | None = None
    features_uri: str | None = None
    s3_endpoint: str | None = None  # the operator's, for features, checkpoints and artifacts
    object_store_secret: str | None = None  # the operator's default S3 credentials Secret


def job_name(name: str, attempt: int = 0) -> str:
    return name[:55] if attempt == 0 else f"{name[:50]}-a{attempt}"


def service_name(name: str) -> str:
    return f"{name[:50]}-workers"


def _metadata(owner: dict, name: str) -> dict:
    run = owner["metadata"]["name"]
    return {"name": name, "namespace": owner["metadata"]["namespace"],
            "labels": child_labels(KIND, run), "ownerReferences": [owner_reference(owner)]}


def trial_name(run: str, index: int) -> str:
    return f"{run[:48].rstrip('-.')}-t{index}"


def ferry_env(owner: dict, spec: TrainingRunSpec, tracking: Tracking, attempt: int = 0
              ) -> list[dict]:
    """The documented FERRY_* (and MLflow) variables the training code receives."""
    meta = owner["metadata"]
    values = {
        "FERRY_RUN_NAME": meta["name"],
        "FERRY_RUN_UID": meta["uid"],
        "FERRY_ATTEMPT": str(attempt),
        "FERRY_PARAMETERS": json.dumps(spec.parameters, sort_keys=True),
        "FERRY_PARAMETERS_FILE": f"{PARAMETERS_DIR}/parameters.json",
        "FERRY_FEATURES_URI": tracking.features_uri,
        "FERRY_CHECKPOINT_URI": spec.checkpoint.uri if spec.checkpoint else None,
        "MLFLOW_TRACKING_URI": spec.mlflow.tracking_uri or tracking.tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": tracking.experiment,
        "MLFLOW_RUN_ID": tracking.run_id,
        "AWS_ENDPOINT_URL_S3": tracking.s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": tracking.s3_endpoint,
    }
    own = {e.name for e in spec.env}  # the spec's env wins over the operator's defaults
    return [{"name": k, "value": v} for k, v in values.items() if v and k not in own]


def credentials_env_from(spec: TrainingRunSpec, tracking: Tracking) -> list[dict]:
    """The object-store Secret, then the MLflow and checkpoint Secrets, as environment (later
    sources win a shared key): credentials reach the pod by reference, never through the spec."""
    store = object_store_env_from(spec.object_store, tracking.object_store_secret)
    taken = {entry["secretRef"]["name"] for entry in store}
    names = [ref.name for ref in (spec.mlflow.credentials,
                                  spec.checkpoint.credentials if spec.checkpoint else None) if ref]
    return store + [{"secretRef": {"name": name}} for name in dict.fromkeys(names)
                    if name not in taken]


def torchrun_env(name: str, spec: TrainingRunSpec, attempt: int = 0) -> list[dict]:
    nproc = max(spec.resources.gpus, 1)
    return [
        {"name": "MASTER_ADDR", "value": f"{job_name(name, attempt)}-0.{service_name(name)}"},
        {"name": "MASTER_PORT", "value": str(MASTER_PORT)},
        {"name": "NNODES", "value": str(spec.workers)},
        {"name": "NPROC_PER_NODE", "value": str(nproc)},
        {"name": "WORLD_SIZE", "value": str(spec.workers * nproc)},
        {"name": "NODE_RANK", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}},
    ]


def resources(spec: TrainingRunSpec) -> dict:
    values = {k: str(v) for k, v in (("cpu", spec.resources.cpu),
                                     ("memory", spec.resources.memory)) if v is not None}
    limits = dict(values)
    if spec.resources.gpus:
        limits[GPU] = str(spec.resources.gpus)
    return {"requests": values, "limits": limits}


def pod_template(owner: dict, spec: TrainingRunSpec, tracking: Tracking, attempt: int = 0
                 ) -> dict:
    name = owner["metadata"]["name"]
    env = ferry_env(owner, spec, tracking, attempt)
    if spec.workers > 1:
        env += torchrun_env(name, spec, attempt)
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env]
    mounts = [{"name": "parameters", "mountPath": PARAMETERS_DIR, "readOnly": True}]
    volumes = [{"name": "parameters", "downwardAPI": {"items": [{
        "path": "parameters.json",
        "fieldRef": {"fieldPath": f"metadata.annotations['{PARAMETERS_ANNOTATION}']"}}]}}]
    if spec.shm_size is not None:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory",
                                                     "sizeLimit": str(spec.shm_size)}})
    container = {
        "name": "trainer", "image": spec.image, "command": spec.command, "args": spec.args,
        "env": env, "envFrom": credentials_env_from(spec, tracking), "resources": resources(spec),
        "volumeMounts": mounts,
    }
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "tolerations": tolerations(spec.tolerations, spec.resources.gpus),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }
    if spec.pod_security == "restricted":
        # Non-root (the uid is the image's numeric USER; an image that runs as root is refused
        # by the kubelet with a message saying so), no escalation, no capabilities.
        pod_spec["securityContext"]["runAsNonRoot"] = True
        container["securityContext"] = {"allowPrivilegeEscalation": False,
                                        "capabilities": {"drop": ["ALL"]}}
    optional = {
        "nodeSelector": spec.node_selector or None,
        "affinity": spec.affinity,
        "priorityClassName": spec.priority_class_name,
        "serviceAccountName": spec.service_account_name,
        "imagePullSecrets": [{"name": s.name} for s in spec.image_pull_secrets] or None,
        "subdomain": service_name(name) if spec.workers > 1 else None,
    }
    pod_spec |= {k: v for k, v in optional.items() if v}
    annotations = {PARAMETERS_ANNOTATION: json.dumps(spec.parameters, sort_keys=True, indent=2)}
    return {"metadata": {"labels": child_labels(KIND, name), "annotations": annotations},
            "spec": pod_spec}


def failure_policy(spec: TrainingRunSpec) -> dict:
    """Disruptions (preemption, drain) never count as a retry; listed exit codes fail at once.

    A distributed attempt fails as a whole on a disruption too (rule 0); the operator restarts it.
    """
    disrupted = "FailJob" if spec.workers > 1 else "Ignore"
    rules = [{"action": disrupted, "onPodConditions": [{"type": "DisruptionTarget"}]}]
    if spec.non_retryable_exit_codes:
        rules.append({"action": "FailJob", "onExitCodes": {
            "containerName": "trainer", "operator": "In",
            "values": sorted(set(spec.non_retryable_exit_codes))}})
    return {"rules": rules}


def build_job(owner: dict, spec: TrainingRunSpec, tracking: Tracking,
              gave_up: str | None = None, attempt: int = 0, cause: str | None = None) -> dict:
    """One attempt of the run (``cause``: why the previous attempt was restarted)."""
    name = owner["metadata"]["name"]
    metadata = _metadata(owner, job_name(name, attempt))
    metadata["labels"][ATTEMPT_LABEL] = str(attempt)
    job_spec = {
        "backoffLimit": spec.backoff_limit if spec.workers == 1 else 0,
        "parallelism": spec.workers,
        "completions": spec.workers,
        "podFailurePolicy": failure_policy(spec),
        "template": pod_template(owner, spec, tracking, attempt),
    }
    if spec.workers > 1:
        job_spec["completionMode"] = "Indexed"
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.queue_name:  # Kueue admits the Job by un-suspending it
        metadata["labels"][KUEUE_QUEUE_LABEL] = spec.queue_name
        job_spec["suspend"] = True
    annotations = {GAVE_UP: gave_up, RESTART_CAUSE: cause}
    if any(annotations.values()):
        metadata["annotations"] = {k: v for k, v in annotations.items() if v}
    if gave_up:
        job_spec["suspend"] = True
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def build_children(owner: dict, spec: TrainingRunSpec, tracking: Tracking,
                   gave_up: str | None = None, attempt: int = 0,
                   cause: str | None = None) -> list[dict]:
    """What one attempt needs: the headless Service of a distributed run, then the Job."""
    name = owner["metadata"]["name"]
    children = []
    if spec.workers > 1:
        children.append({
            "apiVersion": "v1", "kind": "Service", "metadata": _metadata(owner, service_name(name)),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"batch.kubernetes.io/job-name": job_name(name, attempt)},
                     "ports": [{"name": "rendezvous", "port": MASTER_PORT}]},
        })
    children.append(build_job(owner, spec, tracking, gave_up, attempt, cause))
    return children


def build_trial(owner: dict, index: int, parameters: dict[str, str],
                parent_run_id: str | None) -> dict:
    """Trial ``index`` of a sweep: a TrainingRun with the parent's spec minus the sweep and with
    the trial's parameters merged in, owned by (and deleted with) the parent. It keeps the
    parent's ``register`` only so a ModelVersion of the best trial knows its artifact path; a
    trial never registers itself, the sweep registers its best trial."""
    run = owner["metadata"]["name"]
    spec = {k: v for k, v in owner["spec"].items() if k != "sweep"}
    spec["parameters"] = {**(spec.get("parameters") or {}), **parameters}
    if checkpoint := spec.get("checkpoint"):  # trials must not resume from each other's steps
        spec["checkpoint"] = {**checkpoint,
                              "uri": f"{checkpoint['uri'].rstrip('/')}/{trial_name(run, index)}/"}
    metadata = _metadata(owner, trial_name(run, index))
    metadata["labels"] |= {SWEEP_LABEL: run, TRIAL_LABEL: str(index)}
    if parent_run_id:
        metadata["annotations"] = {PARENT_RUN_ANNOTATION: parent_run_id}
    return {"apiVersion": owner["apiVersion"], "kind": KIND, "metadata": metadata, "spec": spec}


def model_version_name(model_name: str, run: str) -> str:
    """``<modelName>-<run>`` made a valid object name (lower case, [a-z0-9.-], ≤ 253)."""
    raw = re.sub(r"[^a-z0-9.]+", "-", f"{model_name}-{run}".lower())
    return re.sub(r"^[^a-z0-9]+|[^a-z0-9]+$", "", raw[:253]) or run


def build_model_version(owner: dict, spec: TrainingRunSpec, source_run: str) -> dict:
    """The ModelVersion of a succeeded run (``source_run``: the run itself, or a sweep's best
    trial). Owned by nobody, so it outlives the run; labelled with the run that produced it."""
    run = owner["metadata"]["name"]
    register = spec.registration
    mv_spec = {"modelName": register.model_name, "trainingRunRef": source_run,
               "gates": register.gates.model_dump(by_alias=True, exclude_none=True),
               "approval": register.approval.model_dump(by_alias=True, exclude_none=True)}
    optional = {"features": spec.features, "description": register.description,
                "tags": register.tags}
    mv_spec |= {k: v for k, v in optional.items() if v}
    return {"apiVersion": owner["apiVersion"], "kind": "ModelVersion",
            "metadata": {"name": model_version_name(register.model_name, run),
                         "namespace": owner["metadata"]["namespace"],
                         "labels": child_labels(KIND, run)},
            "spec": mv_spec}
