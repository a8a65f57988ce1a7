"""Operator configuration, read once from the environment (the Helm chart sets these variables)."""

from __future__ import annotations

import os
import socket

from pydantic import BaseModel, Field

from ferry.api.common import DNS_SUBDOMAIN


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class OperatorConfig(BaseModel):
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty means all namespaces.")
    metrics_port: int = Field(8080, description="Port of /metrics, /healthz and /readyz.")
    metrics_host: str = "0.0.0.0"
    leader_election: bool = True
    lease_name: str = "ferry-operator"
    lease_namespace: str = "default"
    identity: str = Field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    lease_duration_seconds: float = 15.0
    renew_deadline_seconds: float = 10.0
    retry_period_seconds: float = 2.0
    resync_seconds: float = Field(60.0, description="Periodic drift check of every object.")
    log_level: str = "INFO"
    log_format: str = "json"
    image: str = Field("ghcr.io/ferry-dev/ferry:0.1.0",
                       description="Image of the pods that run Ferry's own commands.")
    s3_endpoint: str | None = Field(None, description="S3 endpoint for Ferry and its pods.")
    s3_bucket: str = "ferry"
    default_object_store_secret: str | None = Field(
        None, pattern=DNS_SUBDOMAIN,
        description="Secret (in each object's namespace) with the pods' S3 credentials when a "
                    "spec names no spec.objectStore.")
    mlflow_uri: str | None = Field(None, description="MLflow tracking and registry server.")
    prometheus_url: str | None = Field(
        None, description="Prometheus HTTP API for rollout analysis (InferenceService).")
    features_prefix: str = "features"
    reconcile_workers: int = Field(
        16, description="Objects reconciled at once (one work queue for every kind).")
    kube_workers: int = 8
    mlflow_workers: int = 4
    mlflow_admission_seconds: float | None = Field(
        2.0, gt=0, description=("How long a reconcile waits for a free MLflow thread before it "
                                "gives its worker back and comes again (none: no limit)."))
    s3_workers: int = 4
    prometheus_workers: int = 2

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> OperatorConfig:
        env = dict(os.environ if env is None else env)
        values: dict = {}
        # Every field can be set as FERRY_<FIELD NAME>, e.g. FERRY_METRICS_PORT=9090.
        for name in cls.model_fields:
            raw = env.get(f"FERRY_{name.upper()}")
            if raw:
                values[name] = _split(raw) if name == "namespaces" else raw
        # In a pod the Downward API gives a stable identity and the namespace for the Lease.
        if env.get("POD_NAME") and "FERRY_IDENTITY" not in env:
            values["identity"] = env["POD_NAME"]
        if env.get("POD_NAMESPACE") and "FERRY_LEASE_NAMESPACE" not in env:
            values["lease_namespace"] = env["POD_NAMESPACE"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)
