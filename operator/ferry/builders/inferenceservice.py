"""InferenceService → one Deployment per served version, Services, HPA, PDB and an HTTPRoute.

Names (deterministic, so a restarted operator finds everything again):

- Deployment ``<name>-<modelversion>`` per served ModelVersion; its pods carry
  ``ferry.dev/model-version`` (immutable for that Deployment). The role (``stable``, ``canary``,
  ``preview``, ``shadow``, ``previous``, ``rolledBack``) is a label of the *Deployment* only, so a
  promotion relabels no pod and restarts nothing.
- Service ``<name>`` (the URL in status) selects the active version, or every serving pod of the
  service during a replica-ratio canary; ``<name>-canary`` selects the canary/shadow candidate and
  ``<name>-preview`` the blue-green preview.
- HPA ``<name>`` (autoscaling/v2) targets the stable Deployment; PDB ``<name>`` covers all
  serving pods; HTTPRoute ``<name>`` when ``spec.traffic.gatewayRef`` is set.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

from ferry.api.inferenceservice import InferenceServiceSpec, ServedModel
from ferry.builders.labels import child_labels, owner_reference
from ferry.builders.objectstore import object_store_env_from
from ferry.builders.scheduling import GPU, tolerations
from ferry.reconcilers.rollout import Plan

KIND = "InferenceService"
MODEL_VERSION_LABEL = "ferry.dev/model-version"
ROLE_LABEL = "ferry.dev/role"
SERVICE_LABEL = "ferry.dev/inferenceservice"
SERVE_COMMAND = ["ferry", "serve"]
READY_PATH = "/v2/health/ready"
GATEWAY_GROUP = "gateway.networking.k8s.io"
GRPC_PORT = 8081  # Open Inference v2 gRPC, next to HTTP, as KServe and MLServer do


@dataclass(frozen=True)
class Serving:
    """Operator settings the pods need: image, MLflow and S3 endpoints, prediction log bucket and
    the default S3 credentials Secret."""

    image: str
    mlflow_uri: str | None = None
    s3_endpoint: str | None = None
    bucket: str = "ferry"
    object_store_secret: str | None = None


def label_value(value: str) -> str:
    """A label value (max 63 characters); long names keep a hash suffix to stay unique."""
    if len(value) <= 63:
        return value
    return f"{value[:52]}-{hashlib.sha256(value.encode()).hexdigest()[:10]}"


def short(name: str, suffix: str = "", limit: int = 63) -> str:
    full = f"{name}{suffix}"
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:8]
    return f"{name[:limit - len(suffix) - 9]}-{digest}{suffix}"


def deployment_name(service: str, model_version: str) -> str:
    return short(f"{service}-{model_version}")


def canary_service_name(service: str) -> str:
    return short(service, "-canary")


def preview_service_name(service: str) -> str:
    return short(service, "-preview")


def url(service: str, namespace: str) -> str:
    return f"http://{service}.{namespace}.svc.cluster.local"


def pod_selector(service: str, model_version: str | None = None) -> dict[str, str]:
    selector = {SERVICE_LABEL: service}
    if model_version:
        selector[MODEL_VERSION_LABEL] = label_value(model_version)
    return selector


def selector_string(service: str) -> str:
    return f"{SERVICE_LABEL}={service}"


def prediction_log_uri(spec: InferenceServiceSpec, serving: Serving, namespace: str,
                       name: str) -> str | None:
    """Where the server writes its sampled predictions (the drift monitor reads them here)."""
    logging = spec.prediction_logging
    if logging is None:
        return None
    prefix = (logging.prefix or "predictions").strip("/")
    return f"s3://{logging.bucket or serving.bucket}/{prefix}/{namespace}/{name}/"


def _metadata(owner: dict, name: str, **labels: str) -> dict:
    return {"name": name, "namespace": owner["metadata"]["namespace"],
            "labels": child_labels(KIND, owner["metadata"]["name"], **labels),
            "ownerReferences": [owner_reference(owner)]}


def resources(spec: InferenceServiceSpec) -> dict:
    wanted = spec.runtime.resources
    requests = {k: str(v) for k, v in (("cpu", wanted.cpu), ("memory", wanted.memory),
                                       ("ephemeral-storage", wanted.ephemeral_storage))
                if v is not None}
    limits = {k: v for k, v in requests.items() if k != "cpu"}
    if wanted.gpus:
        limits[GPU] = str(wanted.gpus)
    return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


def workers(spec: InferenceServiceSpec) -> str | None:
    """FERRY_WORKERS from the container's CPU (Ferry sets it as a request, not a limit, to avoid
    CFS throttling): whole CPUs rounded up, at least 1. Without one the server runs one process."""
    cpu = spec.runtime.resources.cpu
    if cpu is None:
        return None
    text = str(cpu)
    cores = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return str(max(1, math.ceil(cores)))


DRAIN_SECONDS = 5
"""How long a terminating serving pod goes on answering before it closes its listener: the
EndpointSlice controller and kube-proxy on every node need about this long to stop sending it new
connections, so a rollout, scale-down or rollback loses no request. ``ferry serve`` waits this long
itself (FERRY_SHUTDOWN_DELAY_SECONDS), answering with ``Connection: close`` so keep-alive clients
reconnect elsewhere; a custom runtime gets a preStop sleep instead."""
SHUTDOWN_TIMEOUT_SECONDS = 30
"""How long in-flight requests get to finish once the listener is closed."""


def server_env(owner: dict, spec: InferenceServiceSpec, model: ServedModel, serving: Serving,
               mirror: tuple[str, int] | None) -> list[dict]:
    """The model server's contract: what to load, where to bind, where to log and mirror."""
    meta = owner["metadata"]
    values = {
        "FERRY_MODEL_URI": model.uri,
        "FERRY_MODEL_NAME": model.model_name,
        "FERRY_MODEL_VERSION": model.mlflow_version,
        "FERRY_PORT": str(spec.runtime.port),
        "FERRY_GRPC_PORT": str(GRPC_PORT),
        "FERRY_WORKERS": workers(spec),
        "FERRY_SHUTDOWN_DELAY_SECONDS": str(DRAIN_SECONDS) if runtime_is_ferry(spec) else None,
        "FERRY_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
        "MLFLOW_TRACKING_URI": serving.mlflow_uri,
        "AWS_ENDPOINT_URL_S3": serving.s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": serving.s3_endpoint,
    }
    if log_uri := prediction_log_uri(spec, serving, meta["namespace"], meta["name"]):
        values["FERRY_PREDICTION_LOG_URI"] = log_uri
        values["FERRY_PREDICTION_SAMPLE_RATE"] = str(spec.prediction_logging.sample_rate)
    if mirror is not None:
        values["FERRY_MIRROR_URL"] = (f"{url(canary_service_name(meta['name']), meta['namespace'])}"
                                      f":{spec.runtime.port}")
        values["FERRY_MIRROR_PERCENT"] = str(mirror[1])
    env = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    env += [{"name": k, "value": v} for k, v in values.items() if v]
    user = [e.model_dump(by_alias=True, exclude_none=True) for e in spec.runtime.env]
    overridden = {e["name"] for e in user}
    return [e for e in env if e["name"] not in overridden] + user


def runtime_is_ferry(spec: InferenceServiceSpec) -> bool:
    return spec.runtime.image is None


def _probe(probe) -> dict | None:
    return probe.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True) if probe else None


def container(owner: dict, spec: InferenceServiceSpec, model: ServedModel, serving: Serving,
              mirror: tuple[str, int] | None) -> dict:
    runtime = spec.runtime
    command = runtime.command or (SERVE_COMMAND if runtime_is_ferry(spec) else [])
    found = {
        "name": "server",
        "image": runtime.image or serving.image,
        "env": server_env(owner, spec, model, serving, mirror),
        "ports": [{"name": "http", "containerPort": runtime.port, "protocol": "TCP"},
                  {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"}],
        "readinessProbe": _probe(runtime.readiness_probe) or {
            "httpGet": {"path": READY_PATH, "port": runtime.port},
            "periodSeconds": 2, "failureThreshold": 3, "timeoutSeconds": 2},
        "resources": resources(spec),
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    if env_from := object_store_env_from(spec.object_store, serving.object_store_secret):
        found["envFrom"] = env_from
    if command:
        found["command"] = command
    if runtime.args:
        found["args"] = runtime.args
    if runtime.liveness_probe:
        found["livenessProbe"] = _probe(runtime.liveness_probe)
    if not runtime_is_ferry(spec):
        found["lifecycle"] = {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}}
    return found


def build_deployment(owner: dict, spec: InferenceServiceSpec, model: ServedModel, replicas: int,
                     role: str, serving: Serving, mirror: tuple[str, int] | None = None) -> dict:
    name = owner["metadata"]["name"]
    version_label = {MODEL_VERSION_LABEL: label_value(model.model_version)}
    pod_labels = child_labels(KIND, name, **version_label)
    pod_spec = {
        "containers": [container(owner, spec, model, serving, mirror)],
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "automountServiceAccountToken": False,
        "terminationGracePeriodSeconds": DRAIN_SECONDS + SHUTDOWN_TIMEOUT_SECONDS + 5,
    }
    if spec.topology_spread:
        pod_spec["topologySpreadConstraints"] = [
            {"maxSkew": 1, "topologyKey": key, "whenUnsatisfiable": "ScheduleAnyway",
             "labelSelector": {"matchLabels": pod_selector(name, model.model_version)}}
            for key in ("kubernetes.io/hostname", "topology.kubernetes.io/zone")]
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if tolerations_ := tolerations(spec.tolerations, spec.runtime.resources.gpus):
        pod_spec["tolerations"] = tolerations_
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": str(spec.runtime.port),
                   "prometheus.io/path": "/metrics"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _metadata(owner, deployment_name(name, model.model_version),
                              **version_label, **{ROLE_LABEL: role})
        | {"annotations": {"ferry.dev/mlflow-version": model.mlflow_version or "",
                           "ferry.dev/model-uri": model.uri or ""}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": pod_selector(name, model.model_version)},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": pod_labels, "annotations": annotations},
                         "spec": pod_spec},
        },
    }


def build_service(owner: dict, spec: InferenceServiceSpec, name: str,
                  model_version: str | None, role: str) -> dict:
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": _metadata(owner, name, **{ROLE_LABEL: role}),
        "spec": {"type": "ClusterIP",
                 "selector": pod_selector(owner["metadata"]["name"], model_version),
                 "ports": [{"name": "http", "port": spec.runtime.port, "targetPort": "http",
                            "protocol": "TCP"},
                           {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc",
                            "protocol": "TCP", "appProtocol": "kubernetes.io/h2c"}]},
    }


def build_hpa(owner: dict, spec: InferenceServiceSpec, stable: str) -> dict:
    scaling = spec.autoscaling
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(owner, name),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment",
                               "name": deployment_name(name, stable)},
            "minReplicas": max(scaling.min_replicas, 1), "maxReplicas": scaling.max_replicas,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                "type": "Utilization", "averageUtilization": scaling.target_cpu_utilization}}}],
        },
    }


def build_pdb(owner: dict, spec: InferenceServiceSpec) -> dict:
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _metadata(owner, name),
        "spec": {"minAvailable": spec.min_available,
                 "selector": {"matchLabels": pod_selector(name)}},
    }


def build_httproute(owner: dict, spec: InferenceServiceSpec, plan: Plan) -> dict:
    """Weights between ``<name>`` (stable) and ``<name>-canary``; a RequestMirror for shadows."""
    name = owner["metadata"]["name"]
    gateway = spec.traffic.gateway_ref
    parent = {"group": GATEWAY_GROUP, "kind": "Gateway", "name": gateway.name}
    if gateway.namespace:
        parent["namespace"] = gateway.namespace
    if gateway.section_name:
        parent["sectionName"] = gateway.section_name
    port = spec.runtime.port
    stable_weight, canary_weight = plan.weights or (100, 0)
    backends = [{"name": name, "port": port, "weight": stable_weight}]
    if plan.canary and plan.mirror is None:
        backends.append({"name": canary_service_name(name), "port": port,
                         "weight": canary_weight})
    rule: dict = {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                  "backendRefs": backends}
    if plan.mirror is not None:
        rule["filters"] = [{"type": "RequestMirror", "requestMirror": {
            "backendRef": {"name": canary_service_name(name), "port": port},
            "percent": plan.mirror[1]}}]
    return {
        "apiVersion": f"{GATEWAY_GROUP}/v1", "kind": "HTTPRoute",
        "metadata": _metadata(owner, name),
        "spec": {"parentRefs": [parent], "rules": [rule]},
    }


def build_children(owner: dict, spec: InferenceServiceSpec, plan: Plan,
                   serving: Serving) -> list[dict]:
    """Every child the plan asks for, in the order they are applied: traffic first (Services,
    HTTPRoute), then capacity (Deployments, HPA, PDB). A switch away from a version thus reaches
    its Service before that version's pods are scaled down, and they drain (``DRAIN_SECONDS``)
    while the endpoints catch up; the other order leaves the Service with only terminating pods
    for a moment, and kube-proxy refuses connections. Deployments not listed are to be deleted."""
    name = owner["metadata"]["name"]
    traffic = []
    if plan.stable:
        traffic.append(build_service(owner, spec, name, plan.active, "active"))
    if plan.canary:
        traffic.append(build_service(owner, spec, canary_service_name(name), plan.canary,
                                     "canary"))
    if plan.preview:
        traffic.append(build_service(owner, spec, preview_service_name(name), plan.preview,
                                     "preview"))
    if spec.traffic.gateway_ref and plan.stable:
        traffic.append(build_httproute(owner, spec, plan))
    capacity = []
    # Mirroring by the server only when no gateway mirrors: the stable pods forward a share.
    server_mirror = plan.mirror if spec.traffic.gateway_ref is None else None
    for version, model in plan.models.items():
        role = plan.roles[version]
        mirror = server_mirror if version == plan.stable else None
        capacity.append(build_deployment(owner, spec, model, plan.replicas[version], role,
                                         serving, mirror))
    if spec.autoscaling and plan.stable:
        capacity.append(build_hpa(owner, spec, plan.stable))
    if spec.min_available is not None:
        capacity.append(build_pdb(owner, spec))
    return traffic + capacity
