"""TrainingRun → a Job (one worker) or an Indexed Job + headless Service (torchrun), and the
ConfigMap with the run's parameters as JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ferry.api.trainingrun import TrainingRunSpec
from ferry.builders.labels import child_labels, owner_reference

KIND = "TrainingRun"
GPU = "nvidia.com/gpu"
MASTER_PORT = 29500
PARAMETERS_DIR = "/etc/ferry"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
COMPLETION_INDEX = "metadata.annotations['batch.kubernetes.io/job-completion-index']"
# Set on a Job whose workers could not all be placed in time: the Job stays suspended and the
# run stays Failed with this reason, even across operator restarts (the Job is the record).
GAVE_UP = "ferry.dev/gave-up"


@dataclass(frozen=True)
class Tracking:
    """Where the code logs: decided by the operator before the Job exists."""

    tracking_uri: str | None = None
    experiment: str | None = None
    run_id: str | None = None
    features_uri: str | None = None


def job_name(name: str) -> str:
    return name[:55]


def service_name(name: str) -> str:
    return f"{name[:50]}-workers"


def parameters_name(name: str) -> str:
    return f"{name[:52]}-params"


def _metadata(owner: dict, name: str) -> dict:
    run = owner["metadata"]["name"]
    return {"name": name, "namespace": owner["metadata"]["namespace"],
            "labels": child_labels(KIND, run), "ownerReferences": [owner_reference(owner)]}


def ferry_env(owner: dict, spec: TrainingRunSpec, tracking: Tracking) -> list[dict]:
    """The documented FERRY_* (and MLflow) variables the training code receives."""
    meta = owner["metadata"]
    values = {
        "FERRY_RUN_NAME": meta["name"],
        "FERRY_RUN_UID": meta["uid"],
        "FERRY_PARAMETERS": json.dumps(spec.parameters, sort_keys=True),
        "FERRY_PARAMETERS_FILE": f"{PARAMETERS_DIR}/parameters.json",
        "FERRY_FEATURES_URI": tracking.features_uri,
        "FERRY_CHECKPOINT_URI": spec.checkpoint.uri if spec.checkpoint else None,
        "MLFLOW_TRACKING_URI": spec.mlflow.tracking_uri or tracking.tracking_uri,
        "MLFLOW_EXPERIMENT_NAME": tracking.experiment,
        "MLFLOW_RUN_ID": tracking.run_id,
    }
    return [{"name": k, "value": v} for k, v in values.items() if v]


def torchrun_env(name: str, spec: TrainingRunSpec) -> list[dict]:
    nproc = max(spec.resources.gpus, 1)
    return [
        {"name": "MASTER_ADDR", "value": f"{job_name(name)}-0.{service_name(name)}"},
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


def tolerations(spec: TrainingRunSpec) -> list[dict]:
    result = [t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations]
    if spec.resources.gpus and not any(t.get("key") == GPU for t in result):
        result.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    return result


def pod_template(owner: dict, spec: TrainingRunSpec, tracking: Tracking) -> dict:
    name = owner["metadata"]["name"]
    env = ferry_env(owner, spec, tracking)
    if spec.workers > 1:
        env += torchrun_env(name, spec)
    env += [e.model_dump(by_alias=True, exclude_none=True) for e in spec.env]
    mounts = [{"name": "parameters", "mountPath": PARAMETERS_DIR, "readOnly": True}]
    volumes = [{"name": "parameters", "configMap": {"name": parameters_name(name)}}]
    if spec.shm_size is not None:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory",
                                                     "sizeLimit": str(spec.shm_size)}})
    container = {
        "name": "trainer", "image": spec.image, "command": spec.command, "args": spec.args,
        "env": env, "resources": resources(spec), "volumeMounts": mounts,
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}},
    }
    pod_spec = {
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": volumes,
        "tolerations": tolerations(spec),
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
    }
    optional = {
        "nodeSelector": spec.node_selector or None,
        "affinity": spec.affinity,
        "priorityClassName": spec.priority_class_name,
        "serviceAccountName": spec.service_account_name,
        "imagePullSecrets": [{"name": s.name} for s in spec.image_pull_secrets] or None,
        "subdomain": service_name(name) if spec.workers > 1 else None,
    }
    pod_spec |= {k: v for k, v in optional.items() if v}
    return {"metadata": {"labels": child_labels(KIND, name)}, "spec": pod_spec}


def failure_policy(spec: TrainingRunSpec) -> dict:
    """Disruptions (preemption, drain) never count as a retry; listed exit codes fail at once."""
    rules = [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]
    if spec.non_retryable_exit_codes:
        rules.append({"action": "FailJob", "onExitCodes": {
            "containerName": "trainer", "operator": "In",
            "values": sorted(set(spec.non_retryable_exit_codes))}})
    return {"rules": rules}


def build_job(owner: dict, spec: TrainingRunSpec, tracking: Tracking,
              gave_up: str | None = None) -> dict:
    name = owner["metadata"]["name"]
    metadata = _metadata(owner, job_name(name))
    job_spec = {
        "backoffLimit": spec.backoff_limit,
        "parallelism": spec.workers,
        "completions": spec.workers,
        "podFailurePolicy": failure_policy(spec),
        "template": pod_template(owner, spec, tracking),
    }
    if spec.workers > 1:
        job_spec["completionMode"] = "Indexed"
    if spec.active_deadline_seconds:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.queue_name:  # Kueue admits the Job by un-suspending it
        metadata["labels"][KUEUE_QUEUE_LABEL] = spec.queue_name
        job_spec["suspend"] = True
    if gave_up:
        metadata["annotations"] = {GAVE_UP: gave_up}
        job_spec["suspend"] = True
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}


def build_children(owner: dict, spec: TrainingRunSpec, tracking: Tracking,
                   gave_up: str | None = None) -> list[dict]:
    name = owner["metadata"]["name"]
    children = [{
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(owner, parameters_name(name)),
        "data": {"parameters.json": json.dumps(spec.parameters, sort_keys=True, indent=2)},
    }]
    if spec.workers > 1:
        children.append({
            "apiVersion": "v1", "kind": "Service", "metadata": _metadata(owner, service_name(name)),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": {"batch.kubernetes.io/job-name": job_name(name)},
                     "ports": [{"name": "rendezvous", "port": MASTER_PORT}]},
        })
    children.append(build_job(owner, spec, tracking, gave_up))
    return children
