"""Types shared by the four kinds.

Models validate the raw Kubernetes JSON (camelCase aliases, unknown fields rejected) and are the
single source of truth for the CRD schemas (``ferry.generate.crds``). Cross-field rules are
declared next to the fields as CEL ``x-kubernetes-validations`` so the apiserver enforces them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DURATION = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+$"
QUANTITY = r"^[+]?[0-9.]+([eE][-+]?[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"

Name = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
Label = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
Duration = Annotated[str, Field(max_length=32, pattern=DURATION,
                                description="A duration such as 30s, 5m, 1h30m or 7d.")]
Text = Annotated[str, Field(max_length=1024)]
Quantity = Annotated[int | str, Field(description="A Kubernetes quantity, e.g. 500m, 2 or 16Gi.")]
StringMap = Annotated[dict[str, Annotated[str, Field(max_length=4096)]], Field(max_length=64)]
# Free-form Kubernetes structures Ferry passes through unchanged (affinity, probes, ...).
FreeForm = Annotated[dict[str, Any], Field(json_schema_extra={
    "x-kubernetes-preserve-unknown-fields": True})]


def cel(rule: str, message: str, field_path: str | None = None) -> dict:
    """One CEL validation rule for ``x-kubernetes-validations``."""
    validation = {"rule": rule, "message": message}
    if field_path:
        validation["fieldPath"] = field_path
    return validation


def immutable(what: str) -> dict:
    return {"x-kubernetes-validations": [cel("self == oldSelf", f"{what} is immutable")]}


def duration_seconds(value: str) -> float:
    """Parse a Duration into seconds (30s, 5m, 1h30m, 7d, 250ms)."""
    import re

    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h|d)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise ValueError(f"invalid duration {value!r}")
    return sum(float(n) * units[u] for n, u in parts)


@dataclass(frozen=True)
class Rule:
    """A cross-field rule declared once: CEL for the apiserver, ``check`` for pydantic."""

    cel: str
    message: str
    check: Callable[[Any], bool]


def _schema_rules(schema: dict, cls: type) -> None:
    rules = cls.__dict__.get("rules", ())
    if rules:
        schema["x-kubernetes-validations"] = [cel(rule.cel, rule.message) for rule in rules]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              json_schema_extra=_schema_rules)
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self):
        for rule in type(self).__dict__.get("rules", ()):
            if not rule.check(self):
                raise ValueError(rule.message)
        return self


class StatusModel(BaseModel):
    """Status is written by the operator; reading it is tolerant, the CRD schema prunes extras."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class SecretRef(ApiModel):
    """A Secret in the object's namespace; credentials never appear in a spec."""

    name: Name


class ObjectStoreRef(ApiModel):
    """Where the pods of an object get their S3 credentials: one Secret, the same field in every
    kind that starts pods."""

    secret_ref: SecretRef = Field(description=(
        "Secret in the object's namespace with the standard keys AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, optionally AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 and "
        "MLFLOW_S3_ENDPOINT_URL; every key becomes environment of the pods (envFrom)."))


OBJECT_STORE = (
    "S3 credentials of every pod this object starts, as one Secret reference (envFrom). "
    "Precedence: this field, else the operator's default Secret "
    "(FERRY_DEFAULT_OBJECT_STORE_SECRET, loaded optionally: a namespace without it starts pods "
    "without it), else nothing (the pods' cloud identity). Explicit env entries still win over "
    "the Secret's keys, and so does the operator's S3 endpoint (FERRY_S3_ENDPOINT) when set.")


class EnvVar(ApiModel):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")]
    value: Annotated[str, Field(max_length=32768)] | None = None
    value_from: FreeForm | None = Field(None, description="As in a container's env.valueFrom.")


class Toleration(ApiModel):
    key: Annotated[str, Field(max_length=253)] | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Annotated[str, Field(max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class Resources(ApiModel):
    """Per-worker resources; ``gpus`` becomes the ``nvidia.com/gpu`` limit."""

    cpu: Quantity | None = None
    memory: Quantity | None = None
    gpus: Annotated[int, Field(ge=0, le=64)] = 0
    ephemeral_storage: Quantity | None = None

    @field_validator("cpu", "memory", "ephemeral_storage")
    @classmethod
    def _quantity(cls, value):
        import re

        if value is not None and not re.match(QUANTITY, str(value)):
            raise ValueError(f"{value!r} is not a Kubernetes quantity")
        return value


class Container(ApiModel):
    """What runs: image, command and environment (credentials through env valueFrom secrets)."""

    image: Annotated[str, Field(min_length=1, max_length=512)]
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=64)] = []
    args: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(max_length=256)] = []
    env: Annotated[list[EnvVar], Field(max_length=128)] = []
    resources: Resources = Resources()


class Condition(StatusModel):
    type: Annotated[str, Field(max_length=316)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, Field(max_length=1024)]
    message: Annotated[str, Field(max_length=32768)] = ""
    last_transition_time: str
    observed_generation: int | None = None


class FerryStatus(StatusModel):
    observed_generation: int | None = None
    phase: Annotated[str, Field(max_length=64)] | None = None
    conditions: Annotated[list[Condition], Field(max_length=32)] = []


SliceValue = Annotated[str, Field(max_length=1024)]


class Slice(ApiModel):
    """A segment of rows that metrics are also reported for on their own (quality, and any feature
    that reports per segment). Either ``column`` + ``values`` (rows whose column, as text, is one
    of the values: ``1``, ``true`` and ``de`` match an integer, boolean and string column), or
    ``expression``, a DuckDB SQL boolean expression over the row (``amount > 100 AND country =
    'de'``); a row where it is NULL is outside the slice. Slices may overlap."""

    name: Label
    column: Annotated[str, Field(min_length=1, max_length=253)] | None = None
    values: Annotated[list[SliceValue], Field(min_length=1, max_length=256)] | None = None
    expression: Annotated[str, Field(min_length=1, max_length=4096)] | None = None

    rules: ClassVar = (
        Rule("has(self.values) != has(self.expression)", "exactly one of values and expression",
             lambda s: (s.values is None) != (s.expression is None)),
        Rule("has(self.column) == has(self.values)", "column and values go together",
             lambda s: (s.column is None) == (s.values is None)),
    )
