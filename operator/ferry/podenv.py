"""The environment contract between a builder and the pod program it starts.

Each pod program has one config class whose ``ENV`` maps its fields to variable names, the only
place those names are spelled: the builder renders ``to_env()`` into the container, the program
reads ``from_env()`` back. A value the kubelet fills in from the pod itself (the downward API) is
a ``FieldRef``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldRef:
    """A value the kubelet sets from the pod's own fields."""

    path: str


NAMESPACE = FieldRef("metadata.namespace")
JOB_NAME = FieldRef("metadata.labels['batch.kubernetes.io/job-name']")
"""The Job's name: one id per run, also for the Jobs a CronJob creates."""


def entries(values: Mapping[str, str | FieldRef | None]) -> list[dict]:
    """Container env entries, in order; an unset (None) value is left out."""
    return [{"name": name, "valueFrom": {"fieldRef": {"fieldPath": value.path}}}
            if isinstance(value, FieldRef) else {"name": name, "value": value}
            for name, value in values.items() if value is not None]


class MissingEnv(ValueError):
    """The pod lacks a variable its program needs: the builder and the program disagree."""


def read(env: Mapping[str, str], names: Mapping[str, str], required: Iterable[str]
         ) -> dict[str, str | None]:
    """Field -> value of each variable in ``names`` (empty counts as unset)."""
    values = {field: env.get(name) or None for field, name in names.items()}
    missing = [names[field] for field in required if values[field] is None]
    if missing:
        raise MissingEnv(f"the pod's environment lacks {', '.join(missing)}")
    return values
