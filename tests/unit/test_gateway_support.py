"""The HTTPRoute Ferry writes is compared with the installed CRD's schema: a field the apiserver
would prune (a mirror percent on Gateway API before v1.3) refuses the route with a condition."""

from __future__ import annotations

from ferry.api import parse_spec
from ferry.api.inferenceservice import ServedModel
from ferry.builders.inferenceservice import build_httproute
from ferry.reconcilers.gateway import route_support, unknown_fields
from ferry.reconcilers.rollout import Plan

OWNER = {"apiVersion": "ferry.dev/v1alpha1", "kind": "InferenceService",
         "metadata": {"name": "fraud", "namespace": "team", "uid": "u-1"}}
V1 = ServedModel(model_version="fraud-1", mlflow_version="1", model_name="fraud", uri="models:/fraud/1")
V2 = ServedModel(model_version="fraud-2", mlflow_version="2", model_name="fraud", uri="models:/fraud/2")


def obj(properties: dict, **extra) -> dict:
    return {"type": "object", "properties": properties, **extra}


def strings(*names: str) -> dict:
    return obj({name: {"type": "string"} for name in names})


def crd(mirror_fields: tuple[str, ...], version: str = "v1", bundle: str = "v1.2.1") -> dict:
    """An HTTPRoute CRD reduced to the parts Ferry writes; ``mirror_fields``: RequestMirror's."""
    backend = obj({"name": {"type": "string"}, "port": {"type": "integer"},
                   "weight": {"type": "integer"}})
    rule = obj({
        "matches": {"type": "array", "items": obj({"path": strings("type", "value")})},
        "backendRefs": {"type": "array", "items": backend},
        "filters": {"type": "array", "items": obj({
            "type": {"type": "string"},
            "requestMirror": obj({name: backend if name == "backendRef" else {"type": "integer"}
                                  for name in mirror_fields})})},
    })
    spec = obj({"parentRefs": {"type": "array", "items": strings("group", "kind", "name",
                                                                 "namespace", "sectionName")},
                "rules": {"type": "array", "items": rule}})
    return {"metadata": {"name": "httproutes.gateway.networking.k8s.io", "annotations": {
                "gateway.networking.k8s.io/bundle-version": bundle,
                "gateway.networking.k8s.io/channel": "standard"}},
            "spec": {"versions": [{"name": version, "served": True,
                                   "schema": {"openAPIV3Schema": obj({"spec": spec})}}]}}


def route(mirror: bool) -> dict:
    spec = parse_spec("InferenceService", {"model": {"modelVersion": "fraud-2"},
                                           "traffic": {"gatewayRef": {"name": "public"}}})
    plan = Plan(stable="fraud-1", active=None, canary="fraud-2",
                mirror=("fraud-2", 10) if mirror else None, weights=None if mirror else (80, 20))
    plan.add(V2, 1, "canary")
    plan.add(V1, 1, "stable")
    return build_httproute(OWNER, spec, plan)


def test_a_mirror_percent_on_a_gateway_api_without_it_is_refused_with_the_field_and_version():
    support = route_support(crd(("backendRef",)), route(mirror=True))
    assert not support.ok and support.reason == "GatewayAPIUnsupported"
    assert "v1.2.1 (standard)" in support.message
    assert "spec.rules[0].filters[0].requestMirror.percent" in support.message


def test_weights_need_no_new_field_and_a_current_gateway_api_takes_the_mirror():
    assert route_support(crd(("backendRef",)), route(mirror=False)).ok
    current = route_support(crd(("backendRef", "percent", "fraction"), bundle="v1.6.3"),
                            route(mirror=True))
    assert current.ok and current.message == "Gateway API v1.6.3 (standard)"


def test_missing_crd_or_version_is_a_clear_refusal():
    assert route_support(None, route(mirror=False)).reason == "GatewayAPIUnavailable"
    beta_only = route_support(crd(("backendRef",), version="v1beta1"), route(mirror=False))
    assert beta_only.reason == "GatewayAPIUnsupported" and "HTTPRoute v1" in beta_only.message


def test_preserved_and_map_schemas_prune_nothing():
    assert unknown_fields({"x-kubernetes-preserve-unknown-fields": True}, {"any": 1}) == []
    assert unknown_fields({"type": "object", "additionalProperties": {"type": "string"}},
                          {"a": "b"}) == []
    assert unknown_fields(strings("a"), {"a": "x", "b": "y"}) == [".b"]
