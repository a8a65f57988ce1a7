"""TrainingRun status from its Job, its pods and its MLflow run (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ferry.api.common import duration_seconds
from ferry.api.trainingrun import TrainingRunSpec
from ferry.builders.trainingrun import ATTEMPT_LABEL, GAVE_UP, RESTART_CAUSE
from ferry.reconcilers.features import Features
from ferry.reconcilers.outcome import Event
from ferry.status import (
    ANNOUNCED, SCHEDULING_REASONS, find_condition, make_condition, set_condition, transitions)

POLL_WHILE_RUNNING = 5.0
IMAGE_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName"}
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


@dataclass(frozen=True)
class Restart:
    """The next attempt of a distributed run; ``ready`` once the failed attempt's workers are
    all gone (the Job is ``Failed``, not only ``FailureTarget``), so two generations never run."""

    attempt: int
    cause: str  # Failure | Disruption
    ready: bool
    message: str


@dataclass
class Observed:
    job: dict | None
    pods: list[dict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    now: datetime | None = None
    attempt: int = 0
    restart: Restart | None = None  # a restart that waits for the old workers to stop
    features: Features | None = None  # read before the first Job only: it gates the start
    refused: str | None = None  # why the namespace would refuse the run's pods (no Job then)


POD_SECURITY_LEVELS = ("privileged", "baseline", "restricted")
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"


def pod_security_refusal(spec: TrainingRunSpec, namespace: dict | None) -> str | None:
    """Why Pod Security admission would refuse every pod of the run: the namespace enforces a
    stricter level than ``spec.podSecurity``. The Job is then not created (its pods would only
    fail to be created, which the Job's status never tells)."""
    labels = ((namespace or {}).get("metadata") or {}).get("labels") or {}
    enforced = labels.get(ENFORCE_LABEL)
    if enforced not in POD_SECURITY_LEVELS or \
            POD_SECURITY_LEVELS.index(enforced) <= POD_SECURITY_LEVELS.index(spec.pod_security):
        return None
    return (f"spec.podSecurity is {spec.pod_security}, but namespace "
            f"{namespace['metadata']['name']} enforces Pod Security {enforced} "
            f"({ENFORCE_LABEL}); use an image that runs as non-root with podSecurity "
            f"restricted, or a namespace that admits {spec.pod_security} pods.")


def job_phase(job: dict | None) -> str:
    if job is None:
        return "Pending"
    for condition in job.get("status", {}).get("conditions", []):
        if condition["status"] == "True" and condition["type"] in ("Complete", "SuccessCriteriaMet"):
            return "Succeeded"
        if condition["status"] == "True" and condition["type"] in ("Failed", "FailureTarget"):
            return "Failed"
    return "Running" if job.get("status", {}).get("active") else "Pending"


def scheduling_problem(pods: list[dict]) -> tuple[str, str] | None:
    """(reason, message) when a pod cannot be placed: InsufficientGPU or Unschedulable."""
    for pod in pods:
        for condition in pod.get("status", {}).get("conditions", []):
            if (condition["type"], condition["status"], condition.get("reason")) == (
                    "PodScheduled", "False", "Unschedulable"):
                message = condition.get("message", "")
                reason = "InsufficientGPU" if "nvidia.com/gpu" in message else "Unschedulable"
                return reason, message
    return None


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def placement(pod: dict) -> tuple[datetime, datetime | None] | None:
    """When the pod was bound to a node and when it stopped holding it (None: it still does);
    None when it was never placed."""
    metadata, status = pod.get("metadata") or {}, pod.get("status") or {}
    if not (pod.get("spec") or {}).get("nodeName"):
        return None
    bound = next((c.get("lastTransitionTime") for c in status.get("conditions") or []
                  if c["type"] == "PodScheduled" and c["status"] == "True"), None)
    placed = parse_time(bound or status.get("startTime") or metadata.get("creationTimestamp"))
    if placed is None:
        return None
    if status.get("phase") in ("Succeeded", "Failed"):
        finished = [parse_time(s["state"]["terminated"].get("finishedAt"))
                    for s in status.get("containerStatuses") or []
                    if (s.get("state") or {}).get("terminated")]
        finished = [f for f in finished if f is not None]
        return placed, max(finished, default=placed)
    return placed, parse_time(metadata.get("deletionTimestamp"))


def worker_of(pod: dict) -> str:
    metadata = pod.get("metadata") or {}
    return (metadata.get("annotations") or {}).get(COMPLETION_INDEX) or metadata.get("name", "")


def placed_together(pods: list[dict]) -> int:
    """The most workers (completion indexes) that held their nodes at one moment, from the pods'
    bind and end times, now or earlier. Those times have whole seconds, so a worker bound in the
    second another one ended does not count as beside it."""
    spans = [(worker_of(pod), *span) for pod in pods if (span := placement(pod))]
    most = 0
    for worker, start, _ in spans:
        beside = {worker} | {other for other, since, until in spans
                             if since <= start and (until is None or start < until)}
        most = max(most, len(beside))
    return most


def ran_one_after_another(pods: list[dict]) -> bool:
    """A worker was bound after another one had ended (a whole second later, to be sure)."""
    spans = [(worker_of(pod), *span) for pod in pods if (span := placement(pod))]
    return any(later > until for worker, _, until in spans if until is not None
               for other, later, _ in spans if other != worker)


def failure_reason(job: dict | None, pods: list[dict]) -> tuple[str, str]:
    """The most specific reason a run failed: OOMKilled and image errors beat a generic one."""
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            state = status.get("state", {}) | status.get("lastState", {})
            terminated = state.get("terminated") or {}
            if terminated.get("reason") == "OOMKilled":
                return "OOMKilled", f"container {status['name']} ran out of memory"
            waiting = (status.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in IMAGE_ERRORS:
                return "ImagePullError", waiting.get("message", waiting["reason"])
    for condition in (job or {}).get("status", {}).get("conditions", []):
        # FailureTarget comes first (same reason), Failed once the pods are gone.
        if condition["type"] in ("Failed", "FailureTarget") and condition["status"] == "True":
            return condition.get("reason", "Failed"), condition.get("message", "")
    return "Failed", "the training Job failed"


def exit_codes(pods: list[dict]) -> list[int]:
    codes = []
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []) or []:
            terminated = (status.get("state") or {}).get("terminated")
            if terminated and terminated.get("exitCode"):
                codes.append(terminated["exitCode"])
    return codes


def failed_attempts(job_status: dict, pods: list[dict]) -> int:
    """Failed pods so far. The Job controller reports a failure first in
    ``uncountedTerminatedPods`` (and may set FailureTarget in that same update), so the counter
    alone can lag behind; the failed pods themselves are still listed."""
    counted = job_status.get("failed", 0) + len(
        (job_status.get("uncountedTerminatedPods") or {}).get("failed") or [])
    listed = sum(1 for pod in pods if pod.get("status", {}).get("phase") == "Failed")
    return max(counted, listed)


def attempt_of(job: dict | None) -> int:
    labels = (job or {}).get("metadata", {}).get("labels") or {}
    return int(labels.get(ATTEMPT_LABEL) or 0)


def current_job(jobs: list[dict]) -> dict | None:
    """The newest attempt among the run's Jobs."""
    return max(jobs, key=attempt_of, default=None)


def true_condition(job: dict | None, *types: str) -> dict | None:
    for condition in (job or {}).get("status", {}).get("conditions", []):
        if condition["type"] in types and condition["status"] == "True":
            return condition
    return None


def disrupted(pods: list[dict]) -> bool:
    return any(c["type"] == "DisruptionTarget" and c["status"] == "True"
               for pod in pods for c in pod.get("status", {}).get("conditions", []))


def restart_cause(spec: TrainingRunSpec, job: dict, pods: list[dict]) -> str | None:
    """Why a failed distributed attempt may be restarted (Failure | Disruption), or None when it
    must not be: a non-retryable exit code, the deadline, or a run the operator gave up on."""
    failed = true_condition(job, "Failed", "FailureTarget")
    if failed is None or (job["metadata"].get("annotations") or {}).get(GAVE_UP):
        return None
    if disrupted(pods) or "DisruptionTarget" in failed.get("message", ""):
        return "Disruption"
    if set(exit_codes(pods)) & set(spec.non_retryable_exit_codes):
        return None
    if failed.get("reason") in ("BackoffLimitExceeded", "PodFailurePolicy"):
        return "Failure"
    return None


def plan_restart(spec: TrainingRunSpec, jobs: list[dict], pods: list[dict]) -> Restart | None:
    """Whole-job restart of a distributed run whose newest attempt failed (see the builders'
    docstring); None when it is not distributed, did not fail, or ran out of ``maxRestarts``."""
    job = current_job(jobs)
    if spec.workers == 1 or job is None:
        return None
    cause = restart_cause(spec, job, pods)
    failures = sum(1 for j in jobs
                   if (j["metadata"].get("annotations") or {}).get(RESTART_CAUSE) == "Failure")
    if cause is None or (cause == "Failure" and failures >= spec.max_restarts):
        return None
    attempt = attempt_of(job) + 1
    reason, message = failure_reason(job, pods)
    codes = sorted(set(exit_codes(pods)))
    what = "a worker was disrupted" if cause == "Disruption" else \
        f"a worker failed ({reason}{f', exit codes {codes}' if codes else ''})"
    return Restart(attempt, cause, true_condition(job, "Failed") is not None,
                   f"Attempt {attempt - 1}: {what}; restarting all {spec.workers} workers as "
                   f"attempt {attempt} (failure restarts {failures + (cause == 'Failure')}"
                   f"/{spec.max_restarts}).")


def decide(spec: TrainingRunSpec, status: dict, generation: int,
           seen: Observed) -> tuple[dict, list[Event], float | None]:
    """Status fields, Events and the requeue delay of a single or distributed run.

    Without a Job the run is held for its features (``seen.features`` not ready). ``Scheduled``
    is True only once all workers have been placed *at the same time* (seen now, or from the
    pods' bind and end times): KWOK or a slow cluster can run the workers of one Job one after
    another, which no collective survives. Workers that waited for room and then ran one after
    another keep the run Pending with ``Scheduled=False``; it fails with that reason at
    ``schedulingTimeout``, or as soon as the Job completes, never Succeeded.
    """
    conditions = list(status.get("conditions") or [])
    job_status = (seen.job or {}).get("status", {})
    phase = job_phase(seen.job)
    running_or_done = 1 if job_status.get("active") or job_status.get("succeeded") else 0
    attempts = failed_attempts(job_status, seen.pods) + running_or_done if spec.workers == 1 \
        else seen.attempt + (seen.job is not None)
    fields: dict = {"gpus": spec.workers * spec.resources.gpus, "attempts": attempts,
                    "restarts": seen.attempt}
    if seen.job is not None:
        fields["jobName"] = seen.job["metadata"]["name"]
    for source, target in (("startTime", "startTime"), ("completionTime", "completionTime")):
        if job_status.get(source):
            fields[target] = job_status[source]
    if seen.metrics:
        fields["progress"] = {"metrics": seen.metrics}
        if "step" in seen.metrics:
            fields["progress"]["step"] = int(seen.metrics["step"])
        if "epoch" in seen.metrics:
            fields["progress"]["epoch"] = int(seen.metrics["epoch"])
    if seen.features is not None:
        conditions = set_condition(conditions, make_condition(
            "FeaturesReady", *seen.features.condition(), generation))

    # What this attempt's Scheduled condition said last time (an earlier attempt's says nothing).
    before = find_condition(status.get("conditions"), "Scheduled") \
        if (status.get("restarts") or 0) == seen.attempt else None
    together = placed_together(seen.pods)
    placed = together >= spec.workers or (before is not None and before["status"] == "True")
    waited_for_room = before is not None and before["status"] == "False" and \
        before.get("reason") in SCHEDULING_REASONS
    broken = None  # (reason, message) of workers that could not all be placed at once
    if not placed and seen.pods and phase != "Failed" and (
            waited_for_room or (spec.workers > 1 and ran_one_after_another(seen.pods))):
        broken = (before["reason"] if waited_for_room else
                  "InsufficientGPU" if spec.resources.gpus else "Unschedulable",
                  f"At most {together} of {spec.workers} workers were placed at the same "
                  "time; the others waited for room, so the workers did not run together.")

    requeue = None
    problem = scheduling_problem(seen.pods) if phase in ("Pending", "Running") else None
    gave_up = ((seen.job or {}).get("metadata", {}).get("annotations") or {}).get(GAVE_UP)
    if seen.job is None and seen.refused:
        phase = "Pending"
        fields["message"] = seen.refused
        succeeded = make_condition("Succeeded", "Unknown", "PodSecurityForbidden", seen.refused,
                                   generation)
    elif seen.job is None:
        phase = "Pending"
        message = f"Waiting for features: {seen.features.message.rstrip('.')}." if seen.features else \
            "Waiting for the Job."
        succeeded = make_condition("Succeeded", "Unknown", "WaitingForFeatures", message,
                                   generation)
    elif gave_up:
        reason, _, message = gave_up.partition(": ")
        phase = "Failed"
        fields["message"] = gave_up
        succeeded = make_condition("Succeeded", False, reason, message, generation)
        problem = (reason, message)
    elif problem or broken:
        reason, message = problem or broken
        problem = (reason, message)
        conditions = set_condition(conditions, make_condition("Scheduled", False, reason, message,
                                                              generation))
        created = (seen.job or {}).get("metadata", {}).get("creationTimestamp")
        waited = (seen.now - datetime.fromisoformat(created.replace("Z", "+00:00"))
                  ).total_seconds() if created and seen.now else 0
        if spec.scheduling_timeout and waited > duration_seconds(spec.scheduling_timeout):
            phase = "Failed"
            fields["message"] = f"{reason}: not all workers scheduled within " \
                                f"{spec.scheduling_timeout}: {message}"
            succeeded = make_condition("Succeeded", False, reason, fields["message"], generation)
        elif phase == "Succeeded":  # the Job completed, but not as one run of all its workers
            phase = "Failed"
            fields["message"] = f"{reason}: the Job completed without all its workers running " \
                                f"at once: {message}"
            succeeded = make_condition("Succeeded", False, reason, fields["message"], generation)
        else:
            phase = "Pending"
            succeeded = make_condition("Succeeded", "Unknown", reason, message, generation)
            requeue = POLL_WHILE_RUNNING
    elif seen.restart is not None:
        phase = "Running"
        succeeded = make_condition("Succeeded", "Unknown", "Restarting", seen.restart.message,
                                   generation)
        requeue = 1.0
    elif phase == "Succeeded":
        fields["metrics"] = seen.metrics
        succeeded = make_condition("Succeeded", True, "Completed", "Training finished.",
                                   generation)
    elif phase == "Failed":
        reason, message = failure_reason(seen.job, seen.pods)
        codes = exit_codes(seen.pods)
        if codes and reason in ("BackoffLimitExceeded", "PodFailurePolicy", "Failed"):
            message = f"{message} (exit codes {sorted(set(codes))})".strip()
        if seen.attempt:
            message = f"{message} (attempt {seen.attempt} after {seen.attempt} restart(s))"
        fields["message"] = f"{reason}: {message}"
        fields["metrics"] = seen.metrics
        succeeded = make_condition("Succeeded", False, reason, message, generation)
    else:
        succeeded = make_condition("Succeeded", "Unknown", phase, f"Training is {phase.lower()}.",
                                   generation)
        requeue = POLL_WHILE_RUNNING
    if seen.job is not None and not problem:
        if placed or phase == "Succeeded":  # completed with no sign of trouble: it was placed
            scheduled = make_condition("Scheduled", True, "Scheduled", "The worker is placed."
                                       if spec.workers == 1 else
                                       f"All {spec.workers} workers are placed at the same time.",
                                       generation)
        else:
            scheduled = make_condition("Scheduled", "Unknown", "WaitingForWorkers",
                                       f"{together} of {spec.workers} worker(s) placed.",
                                       generation)
        conditions = set_condition(conditions, scheduled)
    conditions = set_condition(conditions, succeeded)
    fields["conditions"] = conditions
    fields["phase"] = phase
    return fields, transitions(status.get("conditions"), conditions, ANNOUNCED["TrainingRun"]), \
        requeue
