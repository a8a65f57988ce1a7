"""Types shared by the four kinds.

Models validate the raw Kubernetes JSON (camelCase aliases, unknown fields rejected) and are the
single source of truth for the CRD schemas (``ferry.generate.crds``). Cross-field rules are
declared next to the fields as CEL ``x-kubernetes-validations`` so the apiserver enforces them too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
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


CRON_FIELDS = 5


def check_cron(value: str) -> str:
    """The apiserver accepts any string for a schedule; a wrong field count is caught on reconcile."""
    if not value.startswith("@") and len(value.split()) != CRON_FIELDS:
        raise ValueError(f"{value!r} is not a 5-field cron expression")
    return value


Cron = Annotated[str, Field(max_length=128), AfterValidator(check_cron)]


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


class KeySelector(ApiModel):
    """core/v1 SecretKeySelector / ConfigMapKeySelector."""

    name: Name
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]
    optional: bool | None = None


class ObjectFieldSelector(ApiModel):
    field_path: Annotated[str, Field(min_length=1, max_length=256)]
    api_version: Annotated[str, Field(max_length=64)] | None = None


class ResourceFieldSelector(ApiModel):
    resource: Annotated[str, Field(min_length=1, max_length=64)]
    container_name: Label | None = None
    divisor: Quantity | None = None


class EnvVarSource(ApiModel):
    """core/v1 EnvVarSource, typed, so a malformed reference is refused at apply time instead of
    failing later when the Job or Deployment is created from it."""

    rules = (Rule("[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef), "
                  "has(self.resourceFieldRef)].filter(x, x).size() == 1",
                  "valueFrom takes exactly one of secretKeyRef, configMapKeyRef, fieldRef, "
                  "resourceFieldRef",
                  lambda m: sum(x is not None for x in (m.secret_key_ref, m.config_map_key_ref,
                                                        m.field_ref, m.resource_field_ref)) == 1),)

    secret_key_ref: KeySelector | None = None
    config_map_key_ref: KeySelector | None = None
    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None


class EnvVar(ApiModel):
    rules = (Rule("!(has(self.value) && has(self.valueFrom))",
                  "an env entry takes value or valueFrom, not both",
                  lambda m: not (m.value is not None and m.value_from is not None)),)

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")]
    value: Annotated[str, Field(max_length=32768)] | None = None
    value_from: EnvVarSource | None = Field(None, description="As in a container's env.valueFrom.")


Port = Annotated[int | str, Field(description="A port number or the name of a container port.")]
Seconds = Annotated[int, Field(ge=0, le=86400)]


class HTTPGetAction(ApiModel):
    path: Annotated[str, Field(max_length=2048)] | None = None
    port: Port
    host: Annotated[str, Field(max_length=253)] | None = None
    scheme: Literal["HTTP", "HTTPS"] | None = None
    http_headers: Annotated[list[StringMap], Field(max_length=16)] = []


class TCPSocketAction(ApiModel):
    port: Port
    host: Annotated[str, Field(max_length=253)] | None = None


class ExecAction(ApiModel):
    command: Annotated[list[Annotated[str, Field(max_length=4096)]], Field(min_length=1, max_length=64)]


class GRPCAction(ApiModel):
    port: Annotated[int, Field(ge=1, le=65535)]
    service: Annotated[str, Field(max_length=253)] | None = None


class Probe(ApiModel):
    """core/v1 Probe, typed: a probe the kubelet could not run is refused at apply time."""

    rules = (Rule("[has(self.httpGet), has(self.tcpSocket), has(self.exec), has(self.grpc)]"
                  ".filter(x, x).size() == 1",
                  "a probe takes exactly one of httpGet, tcpSocket, exec, grpc",
                  lambda m: sum(x is not None for x in (m.http_get, m.tcp_socket, m.exec,
                                                        m.grpc)) == 1),)

    http_get: HTTPGetAction | None = None
    tcp_socket: TCPSocketAction | None = None
    exec: ExecAction | None = None
    grpc: GRPCAction | None = None
    initial_delay_seconds: Seconds | None = None
    period_seconds: Annotated[int, Field(ge=1, le=86400)] | None = None
    timeout_seconds: Annotated[int, Field(ge=1, le=86400)] | None = None
    success_threshold: Annotated[int, Field(ge=1, le=100)] | None = None
    failure_threshold: Annotated[int, Field(ge=1, le=100)] | None = None
    termination_grace_period_seconds: Seconds | None = None


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
