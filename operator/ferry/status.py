"""Status conditions after the Kubernetes API conventions (pure functions, no I/O).

A condition keeps its ``lastTransitionTime`` while its status does not change, so setting the same
condition on every reconcile is idempotent and does not churn the object.
"""

from __future__ import annotations

from datetime import datetime, UTC
from typing import Any

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
