"""``spec.retrainPolicy``: seven triggers, one retraining run per decision, shared gates (pure).

Every reconcile evaluates every configured trigger. A trigger that fires names a dedup key
(``drift:<reportUri>``, ``schedule:<slot>``, ...); the firings whose key was never decided are
combined into one TrainingRun, which carries the triggers and their evidence as annotations.
The gates (valid template, cooldown, maxConcurrent, dailyBudget) are shared by all triggers; a
suppressed firing is decided too, so each key is decided exactly once.

Level-triggered and restart-safe: what triggers remember (decided keys, quality windows, the
requirements hash, the data baseline, when the schedule was first seen) lives in
``status.retrainPolicy``, and a run created but not yet recorded is recognised by the keys in its
evidence annotation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ferry.api.inferenceservice import (
    LOWER_IS_BETTER, PerformanceTrigger, PerformanceWindow, RetrainPolicy, RetrainPolicyStatus)
from ferry.reconcilers import cron
from ferry.reconcilers.outcome import Event
from ferry.reconcilers.retrain import (
    FEATURES_URI_ANNOTATION, Gate, RetrainDecision, build_run, closed_gate, iso, parse_time, run_count)

TRIGGERS_ANNOTATION = "ferry.dev/retrain-triggers"
EVIDENCE_ANNOTATION = "ferry.dev/retrain-evidence"
KEEP_KEYS = 50
BUDGET_WINDOW = timedelta(hours=24)
FIELD = "spec.retrainPolicy"


@dataclass(frozen=True)
class Observed:
    """What the controller read besides the service: the served (champion) ModelVersion's
    lineage and the FeaturePipeline it was trained on."""

    served_versions: tuple[str, ...] = ()  # names status.quality may key the champion by
    training_data_uri: str | None = None
    training_rows: int | None = None       # known when the pipeline still publishes that snapshot
    training_metrics: dict[str, float] = field(default_factory=dict)
    feature_pipeline: str | None = None
    pipeline_spec: dict | None = None
    pipeline_output_uri: str | None = None
    pipeline_run_id: str | None = None
    pipeline_rows: int | None = None


@dataclass(frozen=True)
class Firing:
    trigger: str
    key: str
    reason: str
    facts: dict = field(default_factory=dict)

    def evidence(self) -> dict:
        return {"key": self.key, "reason": self.reason, **self.facts}


def _drift_report(drift: dict) -> str | None:
    return drift.get("reportUri") if drift.get("verdict") == "Drifted" else None


def _drift(drift: dict) -> Firing | None:
    report = _drift_report(drift)
    if report is None:
        return None
    features = drift.get("driftedFeatures", {})
    return Firing("drift", f"drift:{report}",
                  f"drift in {', '.join(sorted(features)) or 'none listed'}",
                  {"reportUri": report, "driftedFeatures": features})


def _skew(drift: dict, observed: Observed) -> Firing | None:
    report = _drift_report(drift)
    reference = drift.get("referenceUri")
    if report is None or not reference or reference != observed.training_data_uri:
        return None
    features = drift.get("driftedFeatures", {})
    return Firing("skew", f"skew:{report}",
                  f"training-serving skew: serving inputs differ from the training snapshot in "
                  f"{', '.join(sorted(features)) or 'none listed'}",
                  {"reportUri": report, "referenceUri": reference, "driftedFeatures": features})


def quality_window(quality: dict) -> str | None:
    """One quality evaluation's identity: the report's run id, else its time."""
    return quality.get("runId") or quality.get("lastRunAt")


def _metric(quality: dict, served: tuple[str, ...], name: str) -> dict | None:
    for group in quality.get("versions", []):
        if group.get("version") in served:
            return next((m for m in group.get("metrics", []) if m.get("name") == name), None)
    return None


def judge_window(trigger: PerformanceTrigger, quality: dict, observed: Observed
                 ) -> tuple[PerformanceWindow, str]:
    """One evaluation: does the champion's metric breach, and why (or why not)."""
    window = quality_window(quality)
    found = _metric(quality, observed.served_versions, trigger.metric) or {}
    value, estimated = found.get("value"), bool(found.get("estimated"))
    name = trigger.metric
    if value is None:
        return PerformanceWindow(window=window, breached=False), f"{name} not reported"
    if estimated and not trigger.use_estimate:
        return PerformanceWindow(window=window, breached=False, value=value, estimated=True), \
            f"{name} is only estimated (useEstimate: false)"
    if trigger.min is not None:
        breached, why = value < trigger.min, f"{name} {value:.4g} < min {trigger.min:.4g}"
    elif trigger.max is not None:
        breached, why = value > trigger.max, f"{name} {value:.4g} > max {trigger.max:.4g}"
    elif (training := observed.training_metrics.get(name)) is None:
        breached, why = False, f"the champion has no training metric {name}"
    elif name in LOWER_IS_BETTER:
        limit = training + trigger.drop_from_training
        breached, why = value > limit, f"{name} {value:.4g} > training {training:.4g} + " \
                                       f"{trigger.drop_from_training:.4g}"
    else:
        limit = training - trigger.drop_from_training
        breached, why = value < limit, f"{name} {value:.4g} < training {training:.4g} - " \
                                       f"{trigger.drop_from_training:.4g}"
    return PerformanceWindow(window=window, breached=breached, value=value,
                             estimated=estimated), why


def _performance(trigger: PerformanceTrigger, quality: dict, observed: Observed,
                 state: RetrainPolicyStatus) -> tuple[Firing | None, list[PerformanceWindow]]:
    """A new quality evaluation joins the last n; m breaches among them fire, keyed by the
    evaluation that completed them."""
    history = list(state.performance_windows)
    window = quality_window(quality)
    if window is None or window == state.quality_window:
        return None, history
    judged, why = judge_window(trigger, quality, observed)
    history = [*history, judged][-trigger.windows.of:]
    breaches = sum(w.breached for w in history)
    if not judged.breached or breaches < trigger.windows.breaching:
        return None, history
    return Firing("performance", f"performance:{window}",
                  f"{why} in {breaches} of the last {len(history)} quality evaluations "
                  f"({trigger.windows.breaching} of {trigger.windows.of})",
                  {"metric": trigger.metric, "value": judged.value, "estimated": judged.estimated,
                   "windows": [w.window for w in history if w.breached]}), history


def _new_data(min_rows: int, observed: Observed, baseline: int | None) -> Firing | None:
    rows, run_id = observed.pipeline_rows, observed.pipeline_run_id
    if baseline is None or rows is None or not run_id or rows - baseline < min_rows:
        return None
    return Firing("newData", f"newData:{run_id}",
                  f"FeaturePipeline {observed.feature_pipeline} published {rows} rows, "
                  f"{rows - baseline} more than the {baseline} last trained on "
                  f"(minRows {min_rows})",
                  {"featurePipeline": observed.feature_pipeline, "runId": run_id, "rows": rows,
                   "baselineRows": baseline, "outputUri": observed.pipeline_output_uri})


def schedule_seen(policy: RetrainPolicy) -> str | None:
    schedule = policy.triggers.schedule
    return f"{schedule.cron} {schedule.time_zone}" if schedule is not None else None


def _schedule(policy: RetrainPolicy, since: datetime, now: datetime) -> Firing | None:
    schedule = policy.triggers.schedule
    slot = cron.latest_slot(schedule.cron, now, schedule.time_zone)
    if slot is None or slot < since:
        return None
    at = iso(slot)
    return Firing("schedule", f"schedule:{at}",
                  f"cron slot {at} of {schedule.cron!r} ({schedule.time_zone})", {"slot": at})


def requirements_hash(policy: RetrainPolicy, pipeline_spec: dict | None) -> str:
    """What a retraining is made from: the template and the champion's FeaturePipeline spec."""
    text = json.dumps({"template": policy.template, "featurePipeline": pipeline_spec},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _requirements(current: str, recorded: str | None) -> Firing | None:
    if recorded is None or recorded == current:
        return None
    return Firing("requirements", f"requirements:{current}",
                  "new requirements: the retraining template or the champion's FeaturePipeline "
                  f"spec changed (hash {recorded} -> {current})",
                  {"hash": current, "previous": recorded})


def _run_keys(run: dict) -> set[str]:
    text = (run["metadata"].get("annotations") or {}).get(EVIDENCE_ANNOTATION)
    try:
        return {entry.get("key") for entry in json.loads(text).values()} if text else set()
    except (ValueError, AttributeError):
        return set()


def _decided(state: RetrainPolicyStatus, firings: list[Firing]) -> dict:
    """The dedup memory with ``firings`` added: the newest keys, and the last one per trigger
    (so a trigger's current key is never forgotten however many others come after it)."""
    keys = [k for k in state.decided if k not in {f.key for f in firings}]
    return {"decided": [*keys, *(f.key for f in firings)][-KEEP_KEYS:],
            "last_keys": {**state.last_keys, **{f.trigger: f.key for f in firings}}}


def _summary(firings: list[Firing]) -> str:
    return "; ".join(f"{f.trigger}: {f.reason}" for f in firings)


def decide_policy(infsvc: dict, policy: RetrainPolicy, record: dict | None, runs: list[dict],
                  observed: Observed, now: datetime) -> RetrainDecision:
    """Decide on ``spec.retrainPolicy``.

    - ``infsvc``: the service, whose ``status.drift`` and ``status.quality`` the monitors wrote;
    - ``record``: ``status.retrainPolicy`` as last written (``RetrainPolicyStatus`` JSON) or None;
    - ``runs``: this service's retraining TrainingRuns (``retrain_labels``), finished or not.

    The decision's status is the new ``status.retrainPolicy`` (None: unchanged).
    """
    state = RetrainPolicyStatus.model_validate(record or {})
    status = infsvc.get("status") or {}
    drift, quality = status.get("drift") or {}, status.get("quality") or {}
    triggers = policy.triggers
    name = infsvc["metadata"]["name"]

    seen = schedule_seen(policy)
    since = parse_time(state.schedule_since) if state.schedule == seen and seen else None
    current_hash = requirements_hash(policy, observed.pipeline_spec)
    baseline = observed.training_rows if observed.training_rows is not None else state.data_rows
    updates: dict = {
        "schedule": seen, "schedule_since": iso(since or now) if seen else None,
        "drift_report": _drift_report(drift) or state.drift_report,
        "quality_window": quality_window(quality) or state.quality_window,
        "requirements_hash": current_hash if triggers.requirements else None,
        "data_rows": (observed.pipeline_rows if baseline is None else baseline)
        if triggers.new_data else None,
        "run_times": [t for t in state.run_times if now - parse_time(t) < BUDGET_WINDOW],
        "performance_windows": [],
    }

    firings: list[Firing | None] = []
    if triggers.drift:
        firings.append(_drift(drift))
    if triggers.skew:
        firings.append(_skew(drift, observed))
    if triggers.performance:
        fired, updates["performance_windows"] = _performance(triggers.performance, quality,
                                                             observed, state)
        firings.append(fired)
    if triggers.new_data:
        firings.append(_new_data(triggers.new_data.min_rows, observed, baseline))
    if triggers.schedule and since is not None:
        firings.append(_schedule(policy, since, now))
    if triggers.on_demand:
        demand = triggers.on_demand
        firings.append(Firing("onDemand", f"onDemand:{demand.id}", demand.reason or "requested",
                              {"id": demand.id}))
    if triggers.requirements:
        firings.append(_requirements(current_hash, state.requirements_hash))
    known = set(state.decided) | set(state.last_keys.values())
    new = [f for f in firings if f is not None and f.key not in known]

    def result(run: dict | None = None, events: tuple[Event, ...] = (), **decided
               ) -> RetrainDecision:
        """The decision with ``updates`` (and, for a decision on ``new``, its keys) written."""
        if new:
            updates.update(_decided(state, new), triggers=[f.trigger for f in new], **decided)
            if any(f.trigger == "performance" for f in new):
                updates["performance_windows"] = []  # the next firing needs m fresh breaches
        written = state.model_copy(update=updates).model_dump(by_alias=True, exclude_none=True)
        return RetrainDecision(run, None if written == record else written, list(events))

    if not new:
        return result()
    keys = {f.key for f in new}
    recorded = state.model_dump(by_alias=True)
    count = run_count(name, recorded, runs)
    adopted = [r for r in runs if _run_keys(r) & keys]
    if adopted:  # created before a restart, not yet recorded
        run_id = adopted[0]["metadata"]["name"]
        created = adopted[0]["metadata"].get("creationTimestamp") or iso(now)
        updates["run_times"] = sorted({*updates["run_times"], created})
        return result(decision="Triggered", count=count, last_run=run_id,
                      last_trigger_time=created,
                      message=f"retraining run {run_id} for {_summary(new)}"[:1024])

    what = f"retraining for {_summary(new)}"
    gate = closed_gate(infsvc, policy, FIELD, what, recorded, runs, now,
                       observed.feature_pipeline) or budget_gate(policy, what, updates["run_times"])
    if gate is not None:
        return result(None, (gate.event(),), decision=gate.decision, message=gate.message[:1024])

    number = count + 1
    annotations = {TRIGGERS_ANNOTATION: ",".join(f.trigger for f in new),
                   EVIDENCE_ANNOTATION: json.dumps({f.trigger: f.evidence() for f in new},
                                                   sort_keys=True)}
    if observed.pipeline_output_uri:
        annotations[FEATURES_URI_ANNOTATION] = observed.pipeline_output_uri
    run = build_run(infsvc, policy.template, number, observed.feature_pipeline, annotations)
    run_id = run["metadata"]["name"]
    message = f"created TrainingRun {run_id} for {_summary(new)}"[:1024]
    updates["run_times"] = [*updates["run_times"], iso(now)]
    if triggers.new_data and observed.pipeline_rows is not None:
        updates["data_rows"] = observed.pipeline_rows  # the run reads the pipeline's latest output
    return result(run, (Event("Normal", "RetrainTriggered", message),), decision="Triggered",
                  count=number, last_run=run_id, last_trigger_time=iso(now), message=message)


def budget_gate(policy: RetrainPolicy, what: str, run_times: list[str]) -> Gate | None:
    """The daily budget: the policy's own gate, after the shared ones."""
    if len(run_times) < policy.daily_budget:
        return None
    reopens = parse_time(min(run_times)) + BUDGET_WINDOW
    return Gate("DailyBudget", f"{what} after {len(run_times)} run(s) in the last 24h "
                               f"(dailyBudget {policy.daily_budget}); next retraining allowed "
                               f"after {iso(reopens)}")


def next_wake(policy: RetrainPolicy, now: datetime) -> float | None:
    """Seconds until the schedule's next slot, so it fires on time rather than at a resync."""
    schedule = policy.triggers.schedule
    slot = cron.next_slot(schedule.cron, now, schedule.time_zone) if schedule else None
    return max(1.0, (slot - now).total_seconds()) if slot else None


def awaits_decision(status: dict) -> bool:
    """A drift or quality report the policy has not evaluated yet (the monitors patch status
    only, which would otherwise wait for the periodic resync)."""
    state = status.get("retrainPolicy") or {}
    report = _drift_report(status.get("drift") or {})
    window = quality_window(status.get("quality") or {})
    return bool(report and report != state.get("driftReport")
                or window and window != state.get("qualityWindow"))
