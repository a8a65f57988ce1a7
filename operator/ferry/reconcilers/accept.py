"""Spec acceptance, the first step of every kind's reconcile.

The apiserver's schema and CEL rules reject most bad input; this catches what they cannot express
(and objects stored before a schema change), reporting it as ``Accepted=False`` with the pydantic
message naming the field, instead of crashing a handler.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ValidationError

from ferry.api import KindInfo
from ferry.reconcilers.outcome import Outcome
from ferry.status import SPEC, make_condition, set_condition, transitions

ACCEPTED = "Accepted"
PHASE_INVALID = "Invalid"
PHASE_PENDING = "Pending"


def describe_validation_error(error: ValidationError, root: str = "spec") -> str:
    parts = []
    for item in error.errors():
        path = ".".join([root, *(str(p) for p in item["loc"])])
        parts.append(f"{path}: {item['msg']}")
    return "; ".join(parts)


def validate_spec(info: KindInfo, body: Mapping) -> tuple[BaseModel | None, str | None]:
    try:
        return info.spec_model.model_validate(dict(body.get("spec") or {})), None
    except ValidationError as error:
        return None, describe_validation_error(error)


def accept(info: KindInfo, body: Mapping) -> tuple[BaseModel | None, Outcome]:
    """Validate the spec and compute observedGeneration, phase and the Accepted condition."""
    status = dict(body.get("status") or {})
    generation = body["metadata"].get("generation")
    spec, problem = validate_spec(info, body)
    if spec is None:
        return None, rejected(body, problem)
    condition = make_condition(ACCEPTED, True, "SpecValid", "The spec is valid.", generation)
    previous = status.get("phase")
    phase = previous if previous and previous != PHASE_INVALID else PHASE_PENDING
    conditions = set_condition(status.get("conditions"), condition)
    return spec, Outcome(
        status={"observedGeneration": generation, "phase": phase, "conditions": conditions},
        events=transitions(status.get("conditions"), conditions, SPEC),
    )


def rejected(body: Mapping, problem: str, reason: str = "InvalidSpec") -> Outcome:
    """``Accepted=False`` with ``reason``, phase Invalid, a Warning Event: a spec the model
    refuses, one whose children the apiserver refuses (``ChildRejected``), or a valid one this
    operator does not act on (never a silent fallback to something the user did not ask for)."""
    status = dict(body.get("status") or {})
    generation = body["metadata"].get("generation")
    condition = make_condition(ACCEPTED, False, reason, problem, generation)
    conditions = set_condition(status.get("conditions"), condition)
    return Outcome(
        status={"observedGeneration": generation, "phase": PHASE_INVALID, "conditions": conditions},
        events=transitions(status.get("conditions"), conditions, SPEC),
    )
