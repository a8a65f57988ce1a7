"""Wake the owning Ferry object when one of its children changes or disappears.

Children are found by the ``app.kubernetes.io/managed-by=ferry`` label (filtered server-side, see
``settings.configure``) and matched to their owner by the controller ownerReference's uid.
"""

from __future__ import annotations

import kopf

from ferry.api import GROUP
from ferry.builders.labels import MANAGED_BY_SELECTOR, OWNER_UID

CHILD_RESOURCES = (("batch", "v1", "jobs"), ("batch", "v1", "cronjobs"), ("apps", "v1", "deployments"))


def owner_uids(body: kopf.Body) -> list[str]:
    uids = [
        ref["uid"] for ref in body.metadata.get("ownerReferences", [])
        if ref.get("controller") and ref.get("apiVersion", "").startswith(f"{GROUP}/")
    ]
    if label := body.metadata.get("labels", {}).get(OWNER_UID):
        uids.append(label)
    return uids


def register() -> None:
    for group, version, plural in CHILD_RESOURCES:
        @kopf.on.event(group, version, plural, labels=MANAGED_BY_SELECTOR,
                       id=f"children.{plural}")
        async def child_changed(body: kopf.Body, memo: kopf.Memo, **_) -> None:
            for uid in owner_uids(body):
                memo.controllers.wake(uid)
