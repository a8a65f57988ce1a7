"""When the drift monitor reports drift, start a retraining TrainingRun — at most once per drift
report, never inside the cooldown, never beyond ``maxConcurrent`` running retrains (pure).

Level-triggered and restart-safe: ``status.retrain`` remembers the last drift report decided on,
and the run's name (``<service>-retrain-<n>``) and its ``ferry.dev/drift-report`` annotation make a
create that was not yet recorded recognisable after an operator restart (no duplicate run).

Retraining runs carry the service's labels but no ownerReference: they are training history whose
ModelVersions may be served elsewhere, so deleting the service does not cascade to them.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pydantic import ValidationError

from ferry.api.common import duration_seconds
from ferry.api.inferenceservice import Retrain
from ferry.api.trainingrun import TrainingRunSpec
from ferry.builders.labels import child_labels
from ferry.reconcilers.outcome import Event

KIND = "InferenceService"
COMPONENT = "ferry.dev/component"
RETRAIN_COMPONENT = "retrain"
REPORT_ANNOTATION = "ferry.dev/drift-report"
HTML_REPORT_ANNOTATION = "ferry.dev/drift-html-report"
FEATURES_ANNOTATION = "ferry.dev/drifted-features"
DRIFT_TIME_ANNOTATION = "ferry.dev/drift-time"
FEATURES_URI_ANNOTATION = "ferry.dev/features-uri"
FINISHED_PHASES = {"Succeeded", "Failed"}


@dataclass(frozen=True)
class RetrainDecision:
    run: dict | None                  # a TrainingRun to create (AlreadyExists means done)
    status: dict | None               # the new ``status.retrain``; None: leave it as it is
    events: list[Event] = field(default_factory=list)


def retrain_labels(infsvc_name: str) -> dict[str, str]:
    """Select a service's retraining runs with these labels (the ``runs`` argument)."""
    return child_labels(KIND, infsvc_name, **{COMPONENT: RETRAIN_COMPONENT})


def run_name(infsvc_name: str, number: int) -> str:
    return f"{infsvc_name[:40]}-retrain-{number}"


def _number(infsvc_name: str, run: dict) -> int:
    match = re.fullmatch(re.escape(infsvc_name[:40]) + r"-retrain-(\d+)", run["metadata"]["name"])
    return int(match.group(1)) if match else 0


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_active(run: dict) -> bool:
    return run.get("status", {}).get("phase") not in FINISHED_PHASES


def build_run(infsvc: dict, template: dict, number: int, feature_pipeline: str | None,
              annotations: dict[str, str]) -> dict:
    """The TrainingRun from a retraining template; ``features`` defaults to the pipeline the
    served model was trained on, so the run reads that pipeline's latest output, and
    ``objectStore`` to the service's, so one Secret reference covers the whole loop."""
    name = infsvc["metadata"]["name"]
    spec = copy.deepcopy(template)
    if feature_pipeline and not spec.get("features"):
        spec["features"] = feature_pipeline
    if (store := (infsvc.get("spec") or {}).get("objectStore")) and not spec.get("objectStore"):
        spec["objectStore"] = store
    return {
        "apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": run_name(name, number), "namespace": infsvc["metadata"]["namespace"],
                     "labels": retrain_labels(name), "annotations": annotations},
        "spec": spec,
    }


def drift_annotations(drift: dict, feature_output_uri: str | None) -> dict[str, str]:
    annotations = {
        REPORT_ANNOTATION: drift["reportUri"],
        FEATURES_ANNOTATION: json.dumps(drift.get("driftedFeatures", {}), sort_keys=True),
        DRIFT_TIME_ANNOTATION: drift.get("time") or "",
    }
    if drift.get("htmlReportUri"):
        annotations[HTML_REPORT_ANNOTATION] = drift["htmlReportUri"]
    if feature_output_uri:
        annotations[FEATURES_URI_ANNOTATION] = feature_output_uri
    return annotations


def run_count(infsvc_name: str, record: dict, runs: list[dict]) -> int:
    """Runs created so far: the recorded count, or more where runs exist beyond it."""
    return max([record.get("count", 0), *(_number(infsvc_name, r) for r in runs)])


@dataclass(frozen=True)
class Gate:
    """Why a retraining that is due is not started."""

    decision: str  # InvalidTemplate | Cooldown | MaxConcurrent | DailyBudget
    message: str

    def event(self) -> Event:
        if self.decision == "InvalidTemplate":
            return Event("Warning", "RetrainTemplateInvalid", self.message)
        return Event("Normal", "RetrainSuppressed", self.message)


def closed_gate(infsvc: dict, retrain: Retrain, field_path: str, what: str, record: dict,
                runs: list[dict], now: datetime, feature_pipeline: str | None) -> Gate | None:
    """The first of the gates every retraining passes, in order: a valid template, outside the
    cooldown after the last run, fewer than ``maxConcurrent`` active runs. ``what`` describes
    the retraining in the message; ``record`` holds ``lastRun``/``lastTriggerTime``."""
    try:
        TrainingRunSpec.model_validate(build_run(infsvc, retrain.template, 0, feature_pipeline,
                                                 {})["spec"])
    except ValidationError as error:
        return Gate("InvalidTemplate",
                    f"{field_path}.template is not a valid TrainingRun spec: {error}"[:1024])
    last = parse_time(record.get("lastTriggerTime"))
    cooldown = timedelta(seconds=duration_seconds(retrain.cooldown))
    if last is not None and now - last < cooldown:
        return Gate("Cooldown", f"{what} inside the {retrain.cooldown} cooldown after "
                                f"{record.get('lastRun')}; next retraining allowed after "
                                f"{iso(last + cooldown)}")
    active = sorted(r["metadata"]["name"] for r in runs if is_active(r))
    if len(active) >= retrain.max_concurrent:
        return Gate("MaxConcurrent", f"{what} while {len(active)} retraining run(s) are active "
                                     f"({', '.join(active)}; maxConcurrent "
                                     f"{retrain.max_concurrent})")
    return None


def decide_retrain(infsvc: dict, drift: dict | None, retrain: Retrain | None,
                   record: dict | None, runs: list[dict], now: datetime,
                   feature_pipeline: str | None = None,
                   feature_output_uri: str | None = None) -> RetrainDecision:
    """Decide about the newest drift report.

    - ``drift``: ``status.drift`` (``DriftSummary`` JSON); only ``verdict: Drifted`` with a
      ``reportUri`` can trigger;
    - ``retrain``: ``spec.monitoring.drift.onDrift.retrain`` (None: retraining is off);
    - ``record``: ``status.retrain`` as last written (``RetrainRecord`` JSON) or None;
    - ``runs``: this service's retraining TrainingRuns (``retrain_labels``), finished or not;
    - ``feature_pipeline`` / ``feature_output_uri``: from the served ModelVersion's lineage and
      that pipeline's ``status.latestOutputUri``, recorded on the run.

    Each drift report is decided exactly once: Triggered, Cooldown, MaxConcurrent or
    InvalidTemplate, with one Event; later reconciles of the same report change nothing.
    """
    record = dict(record or {})
    if retrain is None or not drift or drift.get("verdict") != "Drifted" \
            or not drift.get("reportUri"):
        return RetrainDecision(None, None)
    report = drift["reportUri"]
    if record.get("reportUri") == report:
        return RetrainDecision(None, None)
    name = infsvc["metadata"]["name"]
    features = drift.get("driftedFeatures", {})
    feature_list = ", ".join(sorted(features)) or "none listed"
    base = {"reportUri": report, "driftedFeatures": features,
            "count": run_count(name, record, runs)}
    keep = {k: record[k] for k in ("lastRun", "lastTriggerTime") if record.get(k)}

    created = [r for r in runs if r["metadata"].get("annotations", {}).get(REPORT_ANNOTATION)
               == report]
    if created:  # created before a restart, not yet recorded
        run = created[0]["metadata"]["name"]
        return RetrainDecision(None, {**base, "decision": "Triggered", "lastRun": run,
                                      "lastTriggerTime": created[0]["metadata"].get(
                                          "creationTimestamp") or iso(now),
                                      "message": f"retraining run {run} for drifted features "
                                                 f"{feature_list}"})

    gate = closed_gate(infsvc, retrain, "onDrift.retrain", f"drift in {feature_list} ({report})",
                       record, runs, now, feature_pipeline)
    if gate is not None:
        return RetrainDecision(None, {**base, **keep, "decision": gate.decision,
                                      "message": gate.message}, [gate.event()])

    number = base["count"] + 1
    run = build_run(infsvc, retrain.template, number, feature_pipeline,
                    drift_annotations(drift, feature_output_uri))
    run_id = run["metadata"]["name"]
    message = f"created TrainingRun {run_id} for drifted features {feature_list} ({report})"
    return RetrainDecision(run, {**base, "count": number, "decision": "Triggered",
                                 "lastRun": run_id, "lastTriggerTime": iso(now),
                                 "message": message},
                           [Event("Normal", "RetrainTriggered", message)])
