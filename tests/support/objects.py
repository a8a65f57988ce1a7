"""Ferry objects in tests: load the shipped examples and read them back."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from ferry.status import find_condition

EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


def example(kind: str) -> dict:
    """The single-kind example manifest, e.g. ``example("TrainingRun")``."""
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") == kind:
                return document
    raise LookupError(f"no example of kind {kind} in {EXAMPLES}")


def apply(cluster, namespace: str, *objects: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def get(cluster, namespace: str, kind: str, name: str) -> dict:
    return json.loads(cluster.kubectl("get", f"{kind.lower()}.ferry.dev", name, "-n", namespace,
                                      "-o", "json").stdout)


def apply_manifests(cluster, *objects: dict) -> None:
    """Apply objects of any kind as they are (each names its own namespace)."""
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(objects))


def get_resource(cluster, namespace: str, kind: str, name: str) -> dict:
    """Any object, with ``kind`` as kubectl takes it (``deployment``, ``trainingrun.ferry.dev``)."""
    return json.loads(cluster.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout)


def reconciled(obj: dict, condition: str = "Accepted", status: str = "True") -> bool:
    """True when the operator has seen the current generation and ``condition`` has ``status``."""
    current = obj.get("status", {})
    found = find_condition(current.get("conditions"), condition)
    return (current.get("observedGeneration") == obj["metadata"]["generation"]
            and found is not None and found["status"] == status)


RUN_ENDS = ("Succeeded", "Failed")


def phase_reached(obj: dict, wanted: str, ends: tuple[str, ...] = RUN_ENDS) -> dict | None:
    """``obj`` once its phase is ``wanted``; an end phase other than ``wanted`` can never turn
    into it, so it fails the wait at once, with the conditions that say why."""
    status = obj.get("status") or {}
    current = status.get("phase")
    assert current == wanted or current not in ends, (
        f"{obj['kind']} {obj['metadata']['name']} is {current}, not {wanted}: "
        f"{status.get('message', '')} {status.get('conditions')}")
    return obj if current == wanted else None
