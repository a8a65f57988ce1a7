from pathlib import Path

import pytest
import yaml

from ferry.api import KINDS
from ferry.generate.crds import check_crds, generate_crds, structural, write_crds

REPO = Path(__file__).resolve().parents[2]
FORBIDDEN = {"$ref", "$defs", "anyOf", "oneOf", "allOf", "const", "title", "not"}


def walk(schema, path="", parent_key=None):
    yield path, schema
    if not isinstance(schema, dict):
        return
    for name, sub in schema.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from walk(schema[key], f"{path}[{key}]")


def schemas():
    for name, crd in generate_crds().items():
        yield name, crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


@pytest.mark.parametrize("name,schema", list(schemas()))
def test_schema_is_structural(name, schema):
    for path, node in walk(schema):
        assert not FORBIDDEN & set(node), f"{name}{path} has {FORBIDDEN & set(node)}"
        has_type = "type" in node or node.get("x-kubernetes-preserve-unknown-fields") \
            or node.get("x-kubernetes-int-or-string")
        assert has_type, f"{name}{path} has no type"
        assert node.get("additionalProperties") is not False, f"{name}{path}"
        assert "default" not in node or node["default"] is not None, f"{name}{path}"


@pytest.mark.parametrize("name,schema", list(schemas()))
def test_every_string_list_and_map_is_bounded_for_cel_cost(name, schema):
    for path, node in walk(schema):
        if path.startswith(".status") or path == ".metadata" or path in (".apiVersion", ".kind"):
            continue
        kind = node.get("type")
        if kind == "string" and "enum" not in node and "format" not in node:
            assert "maxLength" in node, f"{name}{path}"
        if kind == "array":
            assert "maxItems" in node, f"{name}{path}"
        if kind == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{name}{path}"


def test_checked_in_crds_are_up_to_date():
    assert check_crds(REPO / "crds") == []


def test_check_reports_stale_and_missing_files(tmp_path):
    write_crds(tmp_path)
    victim = next(tmp_path.glob("*trainingruns*"))
    victim.write_text(victim.read_text().replace("maxTrials", "maxTrialz"))
    (tmp_path / "ferry.dev_modelversions.yaml").unlink()
    (tmp_path / "ferry.dev_obsolete.yaml").write_text("{}")
    problems = "\n".join(check_crds(tmp_path))
    assert "trainingruns.yaml: differs" in problems
    assert "modelversions.yaml: missing" in problems
    assert "obsolete.yaml: no model generates it" in problems


def test_names_categories_subresources_and_columns():
    crds = {c["spec"]["names"]["kind"]: c for c in generate_crds().values()}
    assert set(crds) == set(KINDS)
    for kind, crd in crds.items():
        names = crd["spec"]["names"]
        assert names["categories"] == ["ferry", "mlops"]
        assert names["shortNames"] == list(KINDS[kind].short_names)
        version = crd["spec"]["versions"][0]
        assert version["subresources"]["status"] == {}
        columns = [c["name"] for c in version["additionalPrinterColumns"]]
        assert "Phase" in columns and columns[-1] == "Age"
        assert crd["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"] == "-2"
    scale = crds["InferenceService"]["spec"]["versions"][0]["subresources"]["scale"]
    assert scale["specReplicasPath"] == ".spec.replicas"
    assert "scale" not in crds["TrainingRun"]["spec"]["versions"][0]["subresources"]


def test_cel_rules_are_carried_into_the_schema():
    crd = generate_crds()["ferry.dev_featurepipelines.yaml"]
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    version_rules = spec["properties"]["version"]["x-kubernetes-validations"]
    assert version_rules == [{"rule": "self == oldSelf", "message": "version is immutable"}]
    transform_rules = spec["properties"]["transform"]["x-kubernetes-validations"]
    assert "has(self.pointInTime)].filter(x, x).size() == 1" in transform_rules[0]["rule"]


def test_structural_rewrites():
    defs = {"Inner": {"type": "object", "title": "Inner", "properties": {"a": {"type": "string"}}}}
    node = {"anyOf": [{"$ref": "#/$defs/Inner"}, {"type": "null"}], "default": None,
            "description": "d"}
    assert structural(node, defs) == {"type": "object", "description": "d",
                                      "properties": {"a": {"type": "string", "maxLength": 4096}}}
    assert structural({"const": "x"}, {}) == {"enum": ["x"]}
    assert structural({"type": "number", "exclusiveMinimum": 0}, {}) == {
        "type": "number", "minimum": 0, "exclusiveMinimum": True}
    quantity = structural({"anyOf": [{"type": "integer"}, {"type": "string"}]}, {})
    assert quantity["x-kubernetes-int-or-string"] is True
    assert structural({"type": "object", "default": {"a": None, "b": 1}}, {})["default"] == {"b": 1}
    with pytest.raises(ValueError):
        structural({"anyOf": [{"type": "integer"}, {"type": "boolean"}]}, {})


def test_generated_files_are_yaml_documents_of_crds():
    files = sorted((REPO / "crds").glob("ferry.dev_*.yaml"))
    assert len(files) == 4
    for path in files:
        assert yaml.safe_load(path.read_text())["kind"] == "CustomResourceDefinition"
