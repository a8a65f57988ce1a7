"""Generate the CRDs from the pydantic models (the single source of truth).

pydantic emits JSON Schema 2020-12, which Kubernetes does not accept as a *structural* schema. The
post-processing here makes it one:

- ``$ref``/``$defs`` are inlined (siblings such as ``description`` win over the referenced schema);
- ``anyOf: [X, {type: null}]`` (an optional field) becomes ``X``;
- ``int | str`` becomes ``x-kubernetes-int-or-string`` (quantities);
- ``const`` becomes a one-value ``enum``; numeric ``exclusiveMinimum: n`` becomes OpenAPI v3.0's
  ``minimum: n`` + ``exclusiveMinimum: true``;
- ``title`` and ``additionalProperties: false`` are dropped; ``null`` defaults are dropped and
  ``null`` members are stripped from object defaults (structural schemas are not nullable). The
  remaining defaults are applied by the apiserver, so ``kubectl get``/``explain`` show them;
  Argo CD only diffs the fields that are in Git, so server-side defaults show no drift;
- every string, list and map without an explicit bound gets a generous one (``maxLength``,
  ``maxItems``, ``maxProperties``) so CEL rules have a bounded cost estimate.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from ferry.api import CATEGORIES, GROUP, KINDS, VERSION, KindInfo

DEFAULT_MAX_LENGTH = 4096
DEFAULT_MAX_ITEMS = 256
DEFAULT_MAX_PROPERTIES = 256
DROPPED_KEYS = {"title", "examples", "$defs", "discriminator"}
ARGO_CD_ANNOTATIONS = {
    "argocd.argoproj.io/sync-options": "Prune=false,ServerSideApply=true",
    "argocd.argoproj.io/sync-wave": "-2",
}


def _resolve_ref(node: dict, defs: dict) -> dict:
    name = node["$ref"].rsplit("/", 1)[-1]
    merged = copy.deepcopy(defs[name])
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def _is_null(schema: Any) -> bool:
    return isinstance(schema, dict) and schema.get("type") == "null"


def structural(node: Any, defs: dict) -> Any:
    """Rewrite one pydantic JSON-schema node (recursively) into a structural OpenAPI v3 schema."""
    if isinstance(node, list):
        return [structural(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    while "$ref" in node:
        node = _resolve_ref(node, defs)
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if not _is_null(o)]
        types = sorted(structural(o, defs).get("type", "") for o in options)
        if types == ["integer", "string"]:
            node["x-kubernetes-int-or-string"] = True
        elif len(options) == 1:
            inner = structural(options[0], defs)
            node = {**inner, **{k: v for k, v in node.items() if k != "anyOf"}}
        else:
            raise ValueError(f"cannot express the union {options} structurally")
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, inclusive in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[inclusive] = node[bound]
            node[bound] = True
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    if node.get("x-kubernetes-preserve-unknown-fields"):
        # Free-form: an `additionalProperties` schema would prune the nested fields it preserves.
        node.pop("additionalProperties", None)

    result: dict = {}
    for key, value in node.items():
        if key in DROPPED_KEYS:
            continue
        if key == "default":
            value = _without_nulls(value)
            if value is None or value == [] or value == {}:
                continue
        if key == "properties":
            result[key] = {name: structural(sub, defs) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            result[key] = structural(value, defs)
        else:
            result[key] = value
    _bound(result)
    if "properties" in result and "type" not in result:
        result["type"] = "object"
    return result


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def _bound(schema: dict) -> None:
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema and "format" not in schema:
        schema.setdefault("maxLength", DEFAULT_MAX_LENGTH)
    elif kind == "array":
        schema.setdefault("maxItems", DEFAULT_MAX_ITEMS)
    elif kind == "object" and "additionalProperties" in schema:
        schema.setdefault("maxProperties", DEFAULT_MAX_PROPERTIES)


def model_schema(model) -> dict:
    raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    return structural(raw, raw.get("$defs", {}))


def crd(info: KindInfo) -> dict:
    spec_schema = model_schema(info.spec_model)
    spec_schema["description"] = (info.spec_model.__doc__ or "").strip() or f"{info.kind} spec."
    status_schema = model_schema(info.status_model)
    status_schema["description"] = "Observed state, written by the operator."
    version: dict = {
        "name": VERSION,
        "served": True,
        "storage": True,
        "schema": {"openAPIV3Schema": {
            "type": "object",
            "description": _kind_doc(info),
            "required": ["spec"],
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": spec_schema,
                "status": status_schema,
            },
        }},
        "subresources": {"status": {}},
        "additionalPrinterColumns": list(info.printer_columns),
    }
    if info.scale:
        version["subresources"]["scale"] = {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{info.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "ferry", "app.kubernetes.io/name": "ferry"},
            "annotations": dict(ARGO_CD_ANNOTATIONS),
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": list(CATEGORIES),
            },
            "versions": [version],
        },
    }


def _kind_doc(info: KindInfo) -> str:
    import sys

    module = sys.modules[info.spec_model.__module__]
    return (module.__doc__ or info.kind).strip()


def filename(info: KindInfo) -> str:
    return f"{GROUP}_{info.plural}.yaml"


def render(obj: dict) -> str:
    return yaml.safe_dump(obj, sort_keys=False, width=100)


def generate_crds() -> dict[str, dict]:
    """File name -> CRD object, for all kinds."""
    return {filename(info): crd(info) for info in KINDS.values()}


def write_crds(directory: str | Path) -> list[Path]:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, obj in generate_crds().items():
        path = directory / name
        path.write_text(render(obj))
        written.append(path)
    return written


def check_crds(directory: str | Path) -> list[str]:
    """Differences between the generated CRDs and the files in ``directory`` (empty: up to date)."""
    directory = Path(directory)
    problems = []
    expected = generate_crds()
    for name, obj in expected.items():
        path = directory / name
        if not path.exists():
            problems.append(f"{path}: missing")
        elif path.read_text() != render(obj):
            problems.append(f"{path}: differs from the models")
    for path in sorted(directory.glob(f"{GROUP}_*.yaml")):
        if path.name not in expected:
            problems.append(f"{path}: no model generates it")
    return problems
