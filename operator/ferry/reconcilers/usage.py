"""Who uses a FeaturePipeline: InferenceServices serving a ModelVersion trained on it (pure).

An InferenceService serves the ModelVersion it pins (``spec.model.modelVersion``), the versions its
status reports as stable or canary (``latestApproved`` services, and rollouts in flight), and the
previous version a rollout keeps warm for an instant rollback (blue-green ``scaleDownDelaySeconds``,
the ``postPromotion`` window): deleting that one would turn the rollback into an outage.
"""

from __future__ import annotations

from ferry.reconcilers.outcome import Event
from ferry.status import make_condition


def served_model_versions(service: dict) -> set[str]:
    names = {(service.get("spec", {}).get("model") or {}).get("modelVersion")}
    status = service.get("status") or {}
    names |= {status.get("stableVersion"), status.get("canaryVersion")}
    rollout = status.get("rollout") or {}
    names |= {(rollout.get(role) or {}).get("modelVersion")
              for role in ("stable", "candidate", "previous")}
    return {n for n in names if n}


def users(pipeline: str, model_versions: list[dict], services: list[dict]) -> list[str]:
    """``InferenceService/<name> (ModelVersion/<name>)`` for every serving path to the pipeline."""
    trained_on = {mv["metadata"]["name"] for mv in model_versions
                  if (mv.get("spec") or {}).get("features") == pipeline}
    found = []
    for service in services:
        for version in sorted(served_model_versions(service) & trained_on):
            found.append(f"InferenceService/{service['metadata']['name']} "
                         f"(ModelVersion/{version})")
    return sorted(found)


def in_use_condition(found: list[str], generation: int | None, deleting: bool = False) -> dict:
    if not found:
        return make_condition("InUse", False, "NotServed", "No served model uses these features.",
                              generation)
    reason = "DeletionBlocked" if deleting else "Served"
    prefix = "Deletion is held: " if deleting else ""
    return make_condition("InUse", True, reason, f"{prefix}used by {', '.join(found)}.", generation)


def deletion_blocked_event(found: list[str]) -> Event:
    return Event("Warning", "DeletionBlocked",
                 f"Not deleted while a served model depends on it: {', '.join(found)}.")
