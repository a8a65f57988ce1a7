"""Whether the installed Gateway API can carry the HTTPRoute an InferenceService needs (pure).

The apiserver prunes every field its CRD schema does not know. A shadow rollout's RequestMirror
``percent`` is in the standard channel only since Gateway API v1.3: on an older CRD the field would
be dropped without an error and the Gateway would mirror every request. So before writing a route,
Ferry compares it with the schema the cluster serves and refuses what would be lost, naming the
fields and the installed bundle version, instead of writing a route that means something else.
"""

from __future__ import annotations

from dataclasses import dataclass

HTTPROUTE_CRD = "httproutes.gateway.networking.k8s.io"
BUNDLE_VERSION = "gateway.networking.k8s.io/bundle-version"
CHANNEL = "gateway.networking.k8s.io/channel"


@dataclass(frozen=True)
class RouteSupport:
    ok: bool
    reason: str
    message: str


def installed(crd: dict) -> str:
    """``v1.6.3 (standard)``, from the annotations the Gateway API project stamps on its CRDs."""
    annotations = crd.get("metadata", {}).get("annotations") or {}
    version = annotations.get(BUNDLE_VERSION, "of unknown version")
    channel = annotations.get(CHANNEL)
    return f"{version} ({channel})" if channel else version


def served_schema(crd: dict, version: str) -> dict | None:
    for entry in crd.get("spec", {}).get("versions", []):
        if entry.get("name") == version and entry.get("served"):
            return (entry.get("schema") or {}).get("openAPIV3Schema") or {}
    return None


def unknown_fields(schema: dict, value, path: str = "") -> list[str]:
    """The paths in ``value`` that ``schema`` would prune."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(value, dict):
        properties = schema.get("properties")
        if properties is None:
            extra = schema.get("additionalProperties")
            return [p for key, item in value.items() if isinstance(extra, dict)
                    for p in unknown_fields(extra, item, f"{path}.{key}")]
        found = []
        for key, item in value.items():
            if key not in properties:
                found.append(f"{path}.{key}")
            else:
                found += unknown_fields(properties[key], item, f"{path}.{key}")
        return found
    if isinstance(value, list):
        items = schema.get("items") or {}
        return [p for index, item in enumerate(value)
                for p in unknown_fields(items, item, f"{path}[{index}]")]
    return []


def route_support(crd: dict | None, route: dict) -> RouteSupport:
    """Can ``route`` be written as it is? ``crd``: the cluster's HTTPRoute CRD, or None."""
    if crd is None:
        return RouteSupport(False, "GatewayAPIUnavailable",
                            f"the Gateway API is not installed (no {HTTPROUTE_CRD} CRD)")
    version = route["apiVersion"].rpartition("/")[2]
    schema = served_schema(crd, version)
    if schema is None:
        return RouteSupport(False, "GatewayAPIUnsupported",
                            f"Gateway API {installed(crd)} does not serve HTTPRoute {version}")
    lost = unknown_fields(schema.get("properties", {}).get("spec", {}), route.get("spec", {}),
                          "spec")
    if lost:
        return RouteSupport(False, "GatewayAPIUnsupported",
                            f"Gateway API {installed(crd)} has no {', '.join(lost)} in HTTPRoute "
                            f"{version}; the route is not written (the apiserver would drop the "
                            "field, e.g. a mirror percent, and change what the route does): "
                            "install v1.3 or later")
    return RouteSupport(True, "Routed", f"Gateway API {installed(crd)}")
