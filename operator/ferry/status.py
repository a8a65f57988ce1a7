"""Status conditions after the Kubernetes API conventions, and which of their changes are news
(pure functions, no I/O).

A condition keeps its ``lastTransitionTime`` while its status does not change, so setting the same
condition on every reconcile is idempotent and does not churn the object.

Events follow the conditions: a reconcile posts the Events ``transitions`` returns for the
conditions it changed, by the policy declared here per kind. A dependency outage is a condition
too (``RegistryReachable``, ``OutputsReadable``): its False status in the object's status is what
remembers the outage, across retries and operator restarts, so the first failure warns and the
retries while it lasts post nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any

from ferry.reconcilers.outcome import Event

Condition = dict[str, Any]


def now_rfc3339() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def make_condition(type_: str, status: bool | str, reason: str, message: str = "",
                   generation: int | None = None, now: str | None = None) -> Condition:
    if isinstance(status, bool):
        status = "True" if status else "False"
    condition: Condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message[:32768],
        "lastTransitionTime": now or now_rfc3339(),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    return condition


def find_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)


def set_condition(conditions: list[Condition] | None, new: Condition) -> list[Condition]:
    """Return a new list with ``new`` merged in; the transition time moves only on a status change."""
    result = [dict(c) for c in conditions or [] if c.get("type") != new["type"]]
    old = find_condition(conditions, new["type"])
    merged = dict(new)
    if old is not None and old.get("status") == new["status"]:
        merged["lastTransitionTime"] = old.get("lastTransitionTime", new["lastTransitionTime"])
    result.append(merged)
    return sorted(result, key=lambda c: c["type"])


def transitioned(before: list[Condition] | None, after: list[Condition] | None,
                 type_: str) -> Condition | None:
    """The condition of ``type_`` in ``after`` when its status or reason changed, else None."""
    old, new = find_condition(before, type_), find_condition(after, type_)
    if new is None:
        return None
    if old is None or (old.get("status"), old.get("reason")) != (new["status"], new["reason"]):
        return new
    return None


EVENT_MESSAGE_LIMIT = 1024  # what the API keeps of an Event message


@dataclass(frozen=True)
class Announce:
    """Which changes of one condition are news. Every announced condition is positive (True is
    good, as for ``Ready``): True is told as a Normal Event, False and a telling Unknown as a
    Warning. A condition is news only when its status or reason changed."""

    recovery: bool = True                    # becoming True is news ...
    first_try: bool = True                   # ... also straight from absent or Unknown
    failures: frozenset[str] | None = None   # False is news only with these reasons (None: any)
    waits: frozenset[str] = frozenset()      # Unknown with these reasons is news too

    def event(self, previous: Condition | None, new: Condition) -> Event | None:
        status, reason = new["status"], new["reason"]
        if status == "True":
            first = previous is None or previous.get("status") == "Unknown"
            told = self.recovery and (self.first_try or not first)
        elif status == "False":
            told = self.failures is None or reason in self.failures
        else:
            told = reason in self.waits
        if not told:
            return None
        return Event("Normal" if status == "True" else "Warning", reason,
                     new.get("message", "")[:EVENT_MESSAGE_LIMIT])


CHANGES = Announce()
"""Becoming True and becoming False are both news."""
FAILURES = Announce(recovery=False)
"""Only going wrong is news; also every dependency outage: one Warning when it starts, none
while it lasts, a silent recovery."""
SCHEDULING_REASONS = ("InsufficientGPU", "Unschedulable")
"""Why a run's workers wait unplaced: news while still Unknown."""
PLACEMENT = Announce(first_try=False, waits=frozenset(SCHEDULING_REASONS))
"""Ready or placed at the first try is not news (an Event per run costs a write)."""

SPEC: Mapping[str, Announce] = {"Accepted": CHANGES}
"""Every kind: whether its spec is valid."""
ANNOUNCED: Mapping[str, Mapping[str, Announce]] = {
    "InferenceService": {"ModelResolved": FAILURES, "FeaturesReady": FAILURES, "Ready": FAILURES,
                         "TrafficRouted": FAILURES, "DriftMonitor": FAILURES,
                         "QualityMonitor": FAILURES, "QualityHealthy": Announce(first_try=False)},
    "ModelVersion": {"GatesPassed": CHANGES, "Approved": CHANGES, "RegistryReachable": FAILURES,
                     "Registered": Announce(recovery=False,
                                            failures=frozenset({"RegistrationFailed"}))},
    "TrainingRun": {"FeaturesReady": PLACEMENT, "Scheduled": PLACEMENT,
                    "Succeeded": Announce(waits=frozenset(
                        (*SCHEDULING_REASONS, "PodSecurityForbidden"))),
                    "Registered": Announce(recovery=False, failures=frozenset({"NameTaken"}))},
    "FeaturePipeline": {"Validated": CHANGES, "Fresh": CHANGES, "Ready": CHANGES,
                        "OutputsReadable": FAILURES},
}
"""Per kind, in the order their Events are posted: the conditions whose changes are news."""


def transitions(before: list[Condition] | None, after: list[Condition] | None,
                policy: Mapping[str, Announce]) -> list[Event]:
    """The Events for the conditions of ``policy`` that changed from ``before`` to ``after``.
    A waiting reason already told by an earlier condition is not told twice."""
    events: list[Event] = []
    for type_, announce in policy.items():
        changed = transitioned(before, after, type_)
        event = announce.event(find_condition(before, type_), changed) if changed else None
        if event is not None and not (changed["status"] == "Unknown"
                                      and event.reason in {e.reason for e in events}):
            events.append(event)
    return events
