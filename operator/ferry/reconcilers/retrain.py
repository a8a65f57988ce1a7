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
from datetime import datetime, timedelta

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


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def is_active(run: dict) -> bool:
    return run.get("status", {}).get("phase") not in FINISHED_PHASES


def build_run(infsvc: dict, retrain: Retrain, drift: dict, number: int,
              feature_pipeline: str | None, feature_output_uri: str | None) -> dict:
    """The TrainingRun from ``onDrift.retrain.template``; ``features`` defaults to the pipeline
    the served model was trained on, so the run reads that pipeline's latest output, and
    ``objectStore`` to the service's, so one Secret reference covers the whole loop."""
    name = infsvc["metadata"]["name"]
    spec = copy.deepcopy(retrain.template)
    if feature_pipeline and not spec.get("features"):
        spec["features"] = feature_pipeline
    if (store := (infsvc.get("spec") or {}).get("objectStore")) and not spec.get("objectStore"):
        spec["objectStore"] = store
    annotations = {
        REPORT_ANNOTATION: drift["reportUri"],
        FEATURES_ANNOTATION: json.dumps(drift.get("driftedFeatures", {}), sort_keys=True),
        DRIFT_TIME_ANNOTATION: drift.get("time") or "",
    }
    if drift.get("htmlReportUri"):
        annotations[HTML_REPORT_ANNOTATION] = drift["htmlReportUri"]
    if feature_output_uri:
        annotations[FEATURES_URI_ANNOTATION] = feature_output_uri
    return {
        "apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
        "metadata": {"name": run_name(name, number), "namespace": infsvc["metadata"]["namespace"],
                     "labels": retrain_labels(name), "annotations": annotations},
        "spec": spec,
    }


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
            "count": max([record.get("count", 0), *(_number(name, r) for r in runs)])}
    keep = {k: record[k] for k in ("lastRun", "lastTriggerTime") if record.get(k)}

    created = [r for r in runs if r["metadata"].get("annotations", {}).get(REPORT_ANNOTATION)
               == report]
    if created:  # created before a restart, not yet recorded
        run = created[0]["metadata"]["name"]
        return RetrainDecision(None, {**base, "decision": "Triggered", "lastRun": run,
                                      "lastTriggerTime": created[0]["metadata"].get(
                                          "creationTimestamp") or _iso(now),
                                      "message": f"retraining run {run} for drifted features "
                                                 f"{feature_list}"})

    try:
        TrainingRunSpec.model_validate(build_run(infsvc, retrain, drift, 0, feature_pipeline,
                                                 None)["spec"])
    except ValidationError as error:
        message = f"onDrift.retrain.template is not a valid TrainingRun spec: {error}"[:1024]
        return RetrainDecision(None, {**base, **keep, "decision": "InvalidTemplate",
                                      "message": message},
                               [Event("Warning", "RetrainTemplateInvalid", message)])

    last = _parse_time(record.get("lastTriggerTime"))
    cooldown = timedelta(seconds=duration_seconds(retrain.cooldown))
    if last is not None and now - last < cooldown:
        message = (f"drift in {feature_list} ({report}) inside the {retrain.cooldown} cooldown "
                   f"after {record.get('lastRun')}; next retraining allowed after "
                   f"{_iso(last + cooldown)}")
        return RetrainDecision(None, {**base, **keep, "decision": "Cooldown", "message": message},
                               [Event("Normal", "RetrainSuppressed", message)])

    active = sorted(r["metadata"]["name"] for r in runs if is_active(r))
    if len(active) >= retrain.max_concurrent:
        message = (f"drift in {feature_list} ({report}) while {len(active)} retraining run(s) "
                   f"are active ({', '.join(active)}; maxConcurrent {retrain.max_concurrent})")
        return RetrainDecision(None, {**base, **keep, "decision": "MaxConcurrent",
                                      "message": message},
                               [Event("Normal", "RetrainSuppressed", message)])

    number = base["count"] + 1
    run = build_run(infsvc, retrain, drift, number, feature_pipeline, feature_output_uri)
    run_id = run["metadata"]["name"]
    message = f"created TrainingRun {run_id} for drifted features {feature_list} ({report})"
    return RetrainDecision(run, {**base, "count": number, "decision": "Triggered",
                                 "lastRun": run_id, "lastTriggerTime": _iso(now),
                                 "message": message},
                           [Event("Normal", "RetrainTriggered", message)])
