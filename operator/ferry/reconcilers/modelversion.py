"""ModelVersion decisions: gates, approval and phase from what was observed (pure)."""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

from ferry.api.modelversion import ModelVersionSpec
from ferry.reconcilers.outcome import Event
from ferry.status import ANNOUNCED, make_condition, set_condition, transitions

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
NOT_COMPARED = "not compared"  # a gate that passed without comparing (the champion is unmeasurable)


@dataclass
class Observed:
    version: str | None = None                     # registry version, once registered
    metrics: dict[str, float] = field(default_factory=dict)
    champion: str | None = None                    # version holding the champion alias
    champion_metrics: dict[str, float] = field(default_factory=dict)
    features_ready: bool | None = None             # None: no FeaturePipeline referenced
    input_columns: list[str] | None = None         # the model signature's inputs
    feature_columns: list[str] | None = None       # the FeaturePipeline's published schema
    served_by: list[str] = field(default_factory=list)
    now: str = ""


def gate(name: str, verdict: str, observed=None, threshold=None, message: str = "") -> dict:
    result = {"name": name, "verdict": verdict}
    if observed is not None:
        result["observed"] = str(observed)
    if threshold is not None:
        result["threshold"] = str(threshold)
    if message:
        result["message"] = message
    return result


def evaluate_gates(spec: ModelVersionSpec, seen: Observed) -> list[dict]:
    """One result per configured gate: Passed, Failed or Pending, with what was observed.

    ``beatChampion`` compares the candidate's metric with the run metrics of the version holding
    the ``champion`` alias. Only the candidate has to be measurable:

    - the candidate lacks the metric → Failed ("the candidate has no metric ..."): a version that
      cannot be measured cannot be shown to be better;
    - there is no champion, or the candidate is the champion → Passed ("no champion to beat");
    - the champion lacks the metric (registered from a source without an MLflow run, or a run that
      never logged it, e.g. left by an older pipeline) → Passed, with the message "champion vN has
      no metric ...; not compared", repeated in the GatesPassed condition: an unmeasurable
      incumbent cannot block every later candidate; the other gates and approval still apply.
    """
    results = []
    for rule in spec.gates.metrics:
        value = seen.metrics.get(rule.metric)
        if value is None:
            results.append(gate(f"metric {rule.metric}", "Failed", threshold=f"{rule.op} {rule.value}",
                                message=f"metric {rule.metric!r} was not logged"))
        else:
            verdict = "Passed" if OPS[rule.op](value, rule.value) else "Failed"
            results.append(gate(f"metric {rule.metric}", verdict, value, f"{rule.op} {rule.value}"))
    if (beat := spec.gates.beat_champion) is not None:
        name = f"beatChampion {beat.metric}"
        mine = seen.metrics.get(beat.metric)
        theirs = seen.champion_metrics.get(beat.metric)
        if mine is None:
            results.append(gate(name, "Failed", message=(
                f"the candidate has no metric {beat.metric!r} (its run did not log it)")))
        elif seen.champion is None or seen.champion == seen.version:
            results.append(gate(name, "Passed", mine, message="no champion to beat"))
        elif theirs is None:
            results.append(gate(name, "Passed", mine, message=(
                f"champion v{seen.champion} has no metric {beat.metric!r}; {NOT_COMPARED}")))
        else:
            target = theirs + beat.min_delta if beat.goal == "maximize" else theirs - beat.min_delta
            ok = mine >= target if beat.goal == "maximize" else mine <= target
            results.append(gate(name, "Passed" if ok else "Failed", mine,
                                f"{'>=' if beat.goal == 'maximize' else '<='} {target:g} "
                                f"(champion v{seen.champion}: {theirs:g})"))
    if spec.gates.features_ready and spec.features:
        if seen.features_ready is None:
            results.append(gate("featuresReady", "Pending", message=f"{spec.features} not found"))
        else:
            results.append(gate("featuresReady", "Passed" if seen.features_ready else "Failed",
                                "Ready" if seen.features_ready else "NotReady"))
    if spec.gates.signature:
        if seen.input_columns is None:
            results.append(gate("signature", "Failed", message="the model has no input signature"))
        elif seen.feature_columns is not None:
            missing = sorted(set(seen.input_columns) - set(seen.feature_columns))
            results.append(gate("signature", "Failed" if missing else "Passed",
                                ",".join(seen.input_columns),
                                message=f"not in the feature schema: {missing}" if missing else ""))
        else:
            results.append(gate("signature", "Passed", ",".join(seen.input_columns)))
    return results


def decide(spec: ModelVersionSpec, status: dict, generation: int,
           seen: Observed) -> tuple[dict, list[Event]]:
    conditions = list(status.get("conditions") or [])
    fields: dict = {}
    gates = evaluate_gates(spec, seen)
    fields["gates"] = gates
    failed = [g for g in gates if g["verdict"] == "Failed"]
    pending = [g for g in gates if g["verdict"] == "Pending"]
    if failed:
        gates_condition = make_condition(
            "GatesPassed", False, "GateFailed",
            "; ".join(f"{g['name']}: {g.get('observed', '-')} "
                      f"{'vs ' + g['threshold'] if 'threshold' in g else g.get('message', '')}"
                      for g in failed), generation)
    elif pending:
        gates_condition = make_condition("GatesPassed", "Unknown", "GatePending",
                                         ", ".join(g["name"] for g in pending), generation)
    else:
        caveats = [f"{g['name']}: {g['message']}" for g in gates
                   if g.get("message", "").endswith(NOT_COMPARED)]
        gates_condition = make_condition(
            "GatesPassed", True, "AllGatesPassed", f"{len(gates)} gate(s) passed"
            + (f" ({'; '.join(caveats)})." if caveats else "."), generation)
    conditions = set_condition(conditions, gates_condition)

    approval = spec.approval
    record = status.get("approval")
    if approval.approved_by:
        if not record or record.get("by") != approval.approved_by:
            record = {"by": approval.approved_by, "at": seen.now}
            if approval.comment:
                record["comment"] = approval.comment
        fields["approval"] = record
    approved_by_human = bool(approval.approved_by)

    if failed:
        phase = "Rejected"
        approved = make_condition("Approved", False, "Rejected", gates_condition["message"],
                                  generation)
    elif pending:
        phase = "Validating"
        approved = make_condition("Approved", False, "Validating", gates_condition["message"],
                                  generation)
    elif approval.required and not approved_by_human:
        phase = "AwaitingApproval"
        approved = make_condition("Approved", False, "AwaitingApproval",
                                  "Gates passed; waiting for spec.approval.approvedBy "
                                  "(ferry approve).", generation)
    else:
        phase = "Approved"
        message = (f"Approved by {approval.approved_by}" + (f": {approval.comment}"
                                                             if approval.comment else ".")
                   if approved_by_human else "All gates passed; no human approval required.")
        approved = make_condition("Approved", True,
                                  "ApprovedByHuman" if approved_by_human else "GatesPassed",
                                  message, generation)
    conditions = set_condition(conditions, approved)
    if approved["status"] == "True":
        if seen.served_by:
            phase = "Serving"
        elif status.get("phase") in ("Serving", "Retired"):
            phase = "Retired"  # was served, no longer is: still approved, may be served again
    fields["servedBy"] = seen.served_by
    ready = approved["status"] == "True"
    conditions = set_condition(conditions, make_condition(
        "Ready", ready, "Approved" if ready else approved["reason"], approved["message"], generation))
    fields["conditions"] = conditions
    fields["phase"] = phase

    events = []
    if phase != status.get("phase") and phase in ("Serving", "Retired"):
        events.append(Event("Normal", phase, f"Served by {', '.join(seen.served_by)}."
                            if seen.served_by else "No InferenceService serves it any more."))
    return fields, events + transitions(status.get("conditions"), conditions,
                                        ANNOUNCED["ModelVersion"])
