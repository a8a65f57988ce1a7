"""The labels every child of a Ferry object carries (DESIGN.md, Conventions)."""

from __future__ import annotations

MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/part-of"
MANAGED_BY_SELECTOR = {MANAGED_BY: "ferry"}
# Set on children that another controller creates for us (a CronJob's Jobs), whose
# ownerReference points at that controller rather than at the Ferry object.
OWNER_UID = "ferry.dev/owner-uid"


def child_labels(kind: str, name: str, **extra: str) -> dict[str, str]:
    return {MANAGED_BY: "ferry", PART_OF: "ferry", f"ferry.dev/{kind.lower()}": name, **extra}


def owner_reference(owner: dict) -> dict:
    """A controller ownerReference, so the garbage collector removes children with their owner."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
