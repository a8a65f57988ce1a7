"""InferenceService ``spec.monitoring.drift`` → the drift monitor: a CronJob whose pod runs
``ferry drift monitor``, plus the ServiceAccount, Role and RoleBinding it runs with.

Least privilege: the Role allows exactly one thing, ``patch`` on ``inferenceservices/status`` of
this one InferenceService (``resourceNames``). The pod reads nothing else from the apiserver — the
operator resolves the reference (the served ModelVersion's ``status.lineage.dataUri``) and passes
it in as env. S3 credentials arrive by Secret reference, never through a spec: the
InferenceService's ``spec.objectStore`` (or the operator's default) as ``envFrom``, and the serving
pods' own ``AWS_*`` env entries through ``extra_env``.
"""

from __future__ import annotations

from ferry.api.inferenceservice import InferenceServiceSpec
from ferry.builders.labels import OWNER_UID, child_labels, owner_reference
from ferry.builders.objectstore import object_store_env_from
from ferry.drift.config import MonitorConfig

KIND = "InferenceService"
COMPONENT = "ferry.dev/component"
COMPONENT_VALUE = "drift-monitor"
RUN_AS_USER = 65532
# The only writable path (the root filesystem is read-only). Not /tmp itself: a mount over /tmp
# would also hide other volumes' sources on Ferry's local pod runner, whose state lives in /tmp.
SCRATCH = "/tmp/ferry-drift"


def monitor_name(infsvc_name: str) -> str:
    """CronJob/ServiceAccount/Role name; CronJob names must stay within 52 characters."""
    return f"{infsvc_name[:46]}-drift"


def monitor_labels(infsvc_name: str, **extra: str) -> dict[str, str]:
    return child_labels(KIND, infsvc_name, **{COMPONENT: COMPONENT_VALUE}, **extra)


def build_drift_monitor(infsvc: dict, spec: InferenceServiceSpec, image: str,
                        prediction_log_uri: str, report_uri: str, reference_uri: str | None,
                        extra_env: list[dict] | None = None,
                        object_store_secret: str | None = None) -> list[dict]:
    """The drift monitor's objects, or ``[]`` when ``spec.monitoring.drift`` is unset (the
    controller then deletes the children labelled ``ferry.dev/component=drift-monitor``).

    - ``prediction_log_uri``: ``s3://bucket/prefix`` where ``ferry serve`` writes this service's
      prediction log (``<prefix>/dt=YYYY-MM-DD-HH/*.parquet``);
    - ``report_uri``: ``s3://`` prefix for reports; each run writes ``<report_uri>/<job>/drift.json``
      and ``drift.html``;
    - ``reference_uri``: the served ModelVersion's ``status.lineage.dataUri``;
      ``spec.monitoring.drift.reference`` overrides it;
    - ``extra_env``: container env entries appended last (``AWS_ENDPOINT_URL_S3``, credentials as
      ``valueFrom.secretKeyRef``); they win over the Secret's keys;
    - ``object_store_secret``: the operator's default S3 credentials Secret, used when the
      InferenceService has no ``spec.objectStore``.

    Raises ``ValueError`` when no reference is known: the controller reports that as a condition.
    """
    drift = spec.monitoring.drift
    if drift is None:
        return []
    reference = drift.reference or reference_uri
    if not reference:
        raise ValueError("spec.monitoring.drift needs a reference: the served ModelVersion has no "
                         "status.lineage.dataUri and spec.monitoring.drift.reference is not set")
    name, namespace = infsvc["metadata"]["name"], infsvc["metadata"]["namespace"]
    child = monitor_name(name)

    def metadata() -> dict:
        return {"name": child, "namespace": namespace, "labels": monitor_labels(name),
                "ownerReferences": [owner_reference(infsvc)]}

    env = [
        *MonitorConfig(inference_service=name, prediction_log_uri=prediction_log_uri,
                       report_uri=report_uri, drift=drift, reference=reference).to_env(),
        {"name": "TMPDIR", "value": SCRATCH},  # S3 objects are spooled here (emptyDir)
        *(extra_env or []),
    ]
    container = {
        "name": "drift", "image": image, "command": ["ferry", "drift", "monitor"], "env": env,
        "envFrom": object_store_env_from(spec.object_store, object_store_secret),
        # One column at a time: ~1 GiB covers 1M-row windows (see the drift benchmark).
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                      "limits": {"memory": "1536Mi"}},
        "volumeMounts": [{"name": "scratch", "mountPath": SCRATCH}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    pod = {
        "metadata": {"labels": monitor_labels(name)},
        "spec": {
            "serviceAccountName": child,
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS_USER,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "scratch", "emptyDir": {"sizeLimit": "4Gi"}}],
        },
    }
    cron_job = {
        "apiVersion": "batch/v1", "kind": "CronJob", "metadata": metadata(),
        "spec": {
            "schedule": drift.schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": monitor_labels(name, **{OWNER_UID: infsvc["metadata"]["uid"]})},
                "spec": {"backoffLimit": 1, "activeDeadlineSeconds": 3600, "template": pod}},
        },
    }
    service_account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": metadata()}
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": metadata(),
        "rules": [{"apiGroups": ["ferry.dev"], "resources": ["inferenceservices/status"],
                   "resourceNames": [name], "verbs": ["patch"]}],
    }
    role_binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": metadata(),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": child},
        "subjects": [{"kind": "ServiceAccount", "name": child, "namespace": namespace}],
    }
    return [service_account, role, role_binding, cron_job]
