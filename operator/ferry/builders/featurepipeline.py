"""FeaturePipeline → the Job (run once) or CronJob (scheduled) that computes one feature version."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from ferry import podexit
from ferry.api.common import ObjectStoreRef, duration_seconds
from ferry.api.featurepipeline import FeaturePipelineSpec
from ferry.builders.labels import OWNER_UID, child_labels, owner_reference
from ferry.builders.objectstore import object_store_env_from
from ferry.features import layout
from ferry.features.config import JobConfig

KIND = "FeaturePipeline"
BACKFILL_LABEL = "ferry.dev/backfill"
REJECTED_EXIT_CODE = 3  # ferry.features.job.REJECTED: bad output is not retried (nor is a
# failure ferry.podexit names: a wrong Secret)


@dataclass(frozen=True)
class FeatureSettings:
    """Operator-level settings the pods need (Helm values / FERRY_* env of the operator)."""

    image: str
    bucket: str
    prefix: str
    s3_endpoint: str | None = None
    object_store_secret: str | None = None  # the default when a spec names none


def object_store(spec: FeaturePipelineSpec) -> ObjectStoreRef | None:
    """``spec.objectStore``, or the deprecated ``spec.s3Credentials`` it replaced."""
    if spec.object_store is None and spec.s3_credentials is not None:
        return ObjectStoreRef(secret_ref=spec.s3_credentials)
    return spec.object_store


def version_uri(spec: FeaturePipelineSpec, settings: FeatureSettings) -> str:
    output = spec.output
    return layout.version_prefix(output.bucket or settings.bucket,
                                 output.prefix if output.prefix is not None else settings.prefix,
                                 spec.feature_set, spec.version)


def spec_digest(spec: FeaturePipelineSpec) -> str:
    return hashlib.sha256(spec.model_dump_json(by_alias=True).encode()).hexdigest()[:8]


def run_once_job_name(name: str, spec: FeaturePipelineSpec) -> str:
    """Deterministic per spec: re-applying is idempotent, a changed spec runs again."""
    return f"{name[:54]}-{spec_digest(spec)}"


def job_config(spec: FeaturePipelineSpec, settings: FeatureSettings,
               interval: tuple[str, str] | None = None) -> JobConfig:
    """What the Job's pod runs on; ``interval`` is a backfill run's [start, end)."""
    start, end = interval or (None, None)
    return JobConfig(pipeline=spec.model_dump(by_alias=True, exclude_none=True),
                     version_uri=version_uri(spec, settings), s3_endpoint=settings.s3_endpoint,
                     interval_start=start, interval_end=end)


def _container(name: str, image: str, command: list[str], args: list[str], env: list[dict],
               env_from: list[dict], resources: dict | None = None) -> dict:
    container = {
        "name": name, "image": image, "command": command, "args": args, "env": env,
        "envFrom": env_from,
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    if resources:
        container["resources"] = resources
    return container


def _resources(spec) -> dict:
    values = {k: str(v) for k, v in (("cpu", spec.cpu), ("memory", spec.memory)) if v is not None}
    return {"requests": values, "limits": values} if values else {}


def pod_template(name: str, spec: FeaturePipelineSpec, settings: FeatureSettings,
                 interval: tuple[str, str] | None = None) -> dict:
    env = job_config(spec, settings, interval).to_env()
    env_from = object_store_env_from(object_store(spec), settings.object_store_secret)
    init_containers = []
    if spec.transform.container is None:  # sql or pointInTime: computed by ferry itself
        main = _container("features", settings.image, ["ferry", "features", "run"], [], env,
                          env_from)
    else:
        user = spec.transform.container
        user_env = env + [e.model_dump(by_alias=True, exclude_none=True) for e in user.env]
        init_containers.append(_container("transform", user.image, user.command, user.args,
                                          user_env, env_from, _resources(user.resources)))
        main = _container("validate", settings.image, ["ferry", "features", "validate"], [], env,
                          env_from)
    pod = {
        "metadata": {"labels": child_labels(KIND, name)},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [main],
        },
    }
    if init_containers:
        pod["spec"]["initContainers"] = init_containers
    return pod


def job_spec(name: str, spec: FeaturePipelineSpec, settings: FeatureSettings,
             interval: tuple[str, str] | None = None) -> dict:
    template = pod_template(name, spec, settings, interval)
    # Ferry's own container only: a user's transform container keeps its exit codes to itself.
    (ferry_container,) = template["spec"]["containers"]
    return {
        "backoffLimit": 2,
        "podFailurePolicy": {"rules": [
            {"action": "FailJob", "onExitCodes": {
                "containerName": ferry_container["name"], "operator": "In",
                "values": [REJECTED_EXIT_CODE, podexit.EXIT_CODE]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]},
        "template": template,
    }


def build_child(owner: dict, spec: FeaturePipelineSpec, settings: FeatureSettings) -> dict:
    """The one child this pipeline should have: a CronJob when scheduled, else a Job."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    metadata = {"namespace": namespace, "labels": child_labels(KIND, name),
                "ownerReferences": [owner_reference(owner)]}
    if spec.schedule is None:
        return {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"name": run_once_job_name(name, spec), **metadata},
                "spec": job_spec(name, spec, settings)}
    cron = {
        "schedule": spec.schedule,
        "concurrencyPolicy": spec.concurrency_policy,
        "suspend": spec.suspend,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"metadata": {"labels": child_labels(
                            KIND, name, **{OWNER_UID: owner["metadata"]["uid"]})},
                        "spec": job_spec(name, spec, settings)},
    }
    if spec.time_zone:
        cron["timeZone"] = spec.time_zone
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name[:52], **metadata},
            "spec": cron}


def backfill_intervals(spec: FeaturePipelineSpec) -> list[tuple[str, str]]:
    """[from, to) cut into ``interval``-long pieces (the last one may be shorter)."""
    backfill = spec.backfill
    start = datetime.fromisoformat(backfill.from_.replace("Z", "+00:00"))
    end = datetime.fromisoformat(backfill.to.replace("Z", "+00:00"))
    step = timedelta(seconds=duration_seconds(backfill.interval))
    intervals = []
    while start < end:
        stop = min(start + step, end)
        intervals.append((start.strftime("%Y-%m-%dT%H:%M:%SZ"), stop.strftime("%Y-%m-%dT%H:%M:%SZ")))
        start = stop
    return intervals


def backfill_jobs(owner: dict, spec: FeaturePipelineSpec, settings: FeatureSettings) -> list[dict]:
    """One Job per backfill interval, in order; the interval bounds reach the code as env
    (``FERRY_INTERVAL_START``/``END``) and, for SQL, as DuckDB variables of the same names."""
    name, namespace = owner["metadata"]["name"], owner["metadata"]["namespace"]
    digest = spec_digest(spec)[:6]
    jobs = []
    for index, interval in enumerate(backfill_intervals(spec)):
        jobs.append({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": f"{name[:44]}-bf-{digest}-{index}", "namespace": namespace,
                         "labels": child_labels(KIND, name, **{BACKFILL_LABEL: digest}),
                         "ownerReferences": [owner_reference(owner)]},
            "spec": job_spec(name, spec, settings, interval),
        })
    return jobs
