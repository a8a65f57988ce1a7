"""Fuzzed specs of the four kinds: the shipped examples, each with one hypothesis-drawn mutation.

A mutation is guided by the kind's generated CRD schema (``crds/``): it drops a field, gives it a
value of another JSON type, an extreme number, an odd string (empty, blank, unicode, very long,
capitals and slashes), duplicates a list entry, adds a field the example leaves out (a value drawn
from the field's own schema, so mostly valid) or adds a field no schema has. Some specs stay as
the example is. Every spec records the path it mutated, so a rejection can be checked to name it.

The specs come from one ``@given`` function that only collects what it draws, run once with
``derandomize=True`` and no example database: the same Hypothesis, Python and code give the same
specs on every machine (CI reproduces a failure by its index), while the live cluster they are
applied to stays outside Hypothesis' test loop (no shrinking, no deadlines).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ferry.api import KINDS

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
EXAMPLES = ROOT / "manifests" / "examples"

Path_ = tuple[str | int, ...]

ODD_STRINGS = ("", " ", "\t\n", " leading", "trailing ", "UPPER", "Mixed-Case", "a/b", "../up",
               "a b", "-dash", "dash-", "a..b", "a_b", "ünïcødé", "名前", "😀", "0", "-1", "1e999",
               "true", "null", "{}", "[]", "s3://", "s3:///x", "runs:/", "a" * 64, "a" * 254,
               "$(HOME)", "x\x00y", "*/5 * * * *", "P1D", "1h-1m")
EXTREME_NUMBERS = (0, -1, 1, -(2**31), 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63),
                   10**30, -(10**30), 0.5, -0.5, 1e-9, 1e308, -1e308, 1.0, 100.0)
UNKNOWN_FIELD = "fuzzUnknownField"


@dataclass(frozen=True)
class FuzzedSpec:
    kind: str
    name: str
    mutation: str  # none, drop, wrongType, number, string, duplicate, add, unknown
    path: Path_  # below ``spec``; empty for an unmutated spec
    spec: dict

    @property
    def field(self) -> str:
        """The path as the apiserver writes it: ``spec.steps[1].pause``."""
        text = "spec"
        for part in self.path:
            text += f"[{part}]" if isinstance(part, int) else f".{part}"
        return text

    @property
    def last_name(self) -> str:
        """The innermost field name of the path (a CEL rule names it in its message)."""
        names = [part for part in self.path if isinstance(part, str)]
        return names[-1] if names else "spec"

    def named_by(self, message: str) -> bool:
        """Whether an error names the mutated field (never true of an unmutated example)."""
        return self.mutation != "none" and (self.field in message or self.last_name in message)

    def manifest(self) -> dict:
        info = KINDS[self.kind]
        return {"apiVersion": "ferry.dev/v1alpha1", "kind": self.kind,
                "metadata": {"name": self.name, "labels": {"ferry.dev/fuzz": info.short_names[0]}},
                "spec": self.spec}

    def describe(self) -> str:
        return f"{self.name} {self.mutation} {self.field}: {json.dumps(self.spec)[:1500]}"


def spec_schemas() -> dict[str, dict]:
    """The ``spec`` schema of each kind's CRD."""
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        if crd.get("kind") == "CustomResourceDefinition":
            (version,) = crd["spec"]["versions"]
            schemas[crd["spec"]["names"]["kind"]] = \
                version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return schemas


def example_specs() -> dict[str, list[dict]]:
    """Every shipped example's spec, by kind."""
    found: dict[str, list[dict]] = {kind: [] for kind in KINDS}
    for path in sorted(EXAMPLES.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document and document.get("kind") in found:
                found[document["kind"]].append(document["spec"])
    return found


def child_schema(schema: dict, part: str | int) -> dict:
    if isinstance(part, int):
        return schema.get("items", {})
    if part in schema.get("properties", {}):
        return schema["properties"][part]
    additional = schema.get("additionalProperties")
    return additional if isinstance(additional, dict) else {}


def walk(value, schema: dict, path: Path_ = ()):
    """(path, value, schema) of every node below the spec, the spec itself first."""
    yield path, value, schema
    if isinstance(value, dict):
        for key, child in value.items():
            yield from walk(child, child_schema(schema, key), (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from walk(child, child_schema(schema, index), (*path, index))


def json_types(schema: dict) -> set[str]:
    """The JSON types a schema accepts (a number also takes an integer)."""
    if schema.get("x-kubernetes-int-or-string"):
        return {"integer", "string"}
    if schema.get("x-kubernetes-preserve-unknown-fields") and "type" not in schema:
        return {"string", "integer", "number", "boolean", "array", "object"}
    declared = schema.get("type")
    return {"number", "integer"} if declared == "number" else {declared} if declared else set()


def strings(schema: dict) -> st.SearchStrategy[str]:
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 24), 24)
    if "pattern" in schema:
        return st.from_regex(schema["pattern"], fullmatch=True).filter(
            lambda s: low <= len(s) <= schema.get("maxLength", 10**6))
    if schema.get("format") == "date-time":
        return st.datetimes().map(lambda t: t.replace(microsecond=0).isoformat() + "Z")
    return st.text(min_size=low, max_size=max(low, high))


def numbers(schema: dict, integer: bool) -> st.SearchStrategy:
    low, high = schema.get("minimum", -(10**6)), schema.get("maximum", 10**6)
    if integer:
        return st.integers(int(low) + bool(schema.get("exclusiveMinimum")), int(high))
    return st.floats(low, high, allow_nan=False, allow_infinity=False,
                     exclude_min=bool(schema.get("exclusiveMinimum")))


def from_schema(schema: dict, depth: int = 0) -> st.SearchStrategy:
    """A value the schema's types, enums, ranges, lengths and patterns allow (CEL rules aside)."""
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if schema.get("x-kubernetes-int-or-string"):
        return st.integers(0, 64) | strings(schema)
    kind = schema.get("type")
    if kind == "string":
        return strings(schema)
    if kind in ("integer", "number"):
        return numbers(schema, kind == "integer")
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), depth + 1),
                        min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 3), 3))
    properties = schema.get("properties", {})
    if properties:
        required = schema.get("required", [])  # a list: the draws keep one order on every run
        optional = {} if depth > 3 else {k: from_schema(v, depth + 1) for k, v in properties.items()
                                         if k not in required}
        return st.fixed_dictionaries({k: from_schema(properties[k], depth + 1) for k in required},
                                     optional=optional)
    if isinstance(schema.get("additionalProperties"), dict):
        return st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True),
                               from_schema(schema["additionalProperties"], depth + 1), max_size=3)
    return st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2)


OTHER_TYPES = {
    "string": st.text(max_size=12),
    "integer": st.integers(-(10**6), 10**6),
    "number": st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: x != int(x)),
    "boolean": st.booleans(),
    "array": st.lists(st.text(max_size=6) | st.integers(), max_size=2),
    "object": st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=2),
    "null": st.none(),
}
ODD_STRING = (st.sampled_from(ODD_STRINGS) | st.text(max_size=40)
              | st.integers(300, 5000).map(lambda n: "x" * n))
EXTREME_NUMBER = (st.sampled_from(EXTREME_NUMBERS) | st.integers()
                  | st.floats(allow_nan=False, allow_infinity=False))


def set_at(spec: dict, path: Path_, value) -> None:
    *parents, last = path
    node = spec
    for part in parents:
        node = node[part]
    node[last] = value


def remove_at(spec: dict, path: Path_) -> None:
    *parents, last = path
    node = spec
    for part in parents:
        node = node[part]
    del node[last]


@st.composite
def mutated(draw, kind: str, bases: list[dict], schema: dict) -> tuple[str, Path_, dict]:
    spec = copy.deepcopy(draw(st.sampled_from(bases)))
    nodes = list(walk(spec, schema))
    below = [(path, value, sub) for path, value, sub in nodes if path]
    mutation = draw(st.sampled_from(("none", "drop", "wrongType", "number", "string", "duplicate",
                                     "add", "add", "unknown")))
    if mutation == "none":
        return mutation, (), spec
    if mutation in ("drop", "wrongType", "number", "string"):
        path, _, sub = draw(st.sampled_from(below))
        if mutation == "drop":
            remove_at(spec, path)
        elif mutation == "wrongType":
            others = sorted(set(OTHER_TYPES) - json_types(sub) - {"null"}) + ["null"]
            set_at(spec, path, draw(st.sampled_from(others).flatmap(OTHER_TYPES.__getitem__)))
        else:
            set_at(spec, path, draw(EXTREME_NUMBER if mutation == "number" else ODD_STRING))
        return mutation, path, spec
    if mutation == "duplicate":
        lists = [(path, value) for path, value, _ in nodes if isinstance(value, list) and value]
        path, value = draw(st.sampled_from(lists))
        index = draw(st.integers(0, len(value) - 1))
        value.append(copy.deepcopy(value[index]))
        return mutation, (*path, len(value) - 1), spec
    objects = [(path, value, sub) for path, value, sub in nodes
               if isinstance(value, dict) and sub.get("properties")]
    if mutation == "unknown":
        path, value, _ = draw(st.sampled_from(objects))
        value[UNKNOWN_FIELD] = draw(OTHER_TYPES["string"])
        return mutation, (*path, UNKNOWN_FIELD), spec
    missing = [(path, value, key, sub["properties"][key]) for path, value, sub in objects
               for key in sub["properties"] if key not in value]
    path, value, key, sub = draw(st.sampled_from(missing))
    value[key] = draw(from_schema(sub))
    return mutation, (*path, key), spec


def fuzzed_specs(kind: str, count: int) -> list[FuzzedSpec]:
    """``count`` specs of ``kind``, the same on every run."""
    bases, schema = example_specs()[kind], spec_schemas()[kind]
    drawn: list[tuple[str, Path_, dict]] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate],
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(mutated(kind, bases, schema))
    def collect(draw_result):
        drawn.append(draw_result)

    collect()
    short = KINDS[kind].short_names[0]
    return [FuzzedSpec(kind, f"{short}-fuzz-{index:04d}", mutation, path, spec)
            for index, (mutation, path, spec) in enumerate(drawn[:count])]
