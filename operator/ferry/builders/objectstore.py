"""The pods' S3 credentials: one Secret reference per object, resolved the same way for every kind.

Precedence: the spec's ``objectStore.secretRef``, else the operator's default Secret, else none.
The default is loaded ``optional``: it is one name for every namespace, and a namespace that has no
such Secret (its pods use a cloud identity) must still start pods. A Secret the spec names is
required, so a typo fails the pod visibly instead of running without credentials.
"""

from __future__ import annotations

from ferry.api.common import ObjectStoreRef


def object_store_env_from(ref: ObjectStoreRef | None, default: str | None) -> list[dict]:
    """The ``envFrom`` entry of the object-store Secret, or ``[]`` when there is none."""
    if ref is not None:
        return [{"secretRef": {"name": ref.secret_ref.name}}]
    if default:
        return [{"secretRef": {"name": default, "optional": True}}]
    return []
