"""What every monitor of an InferenceService is made of: a CronJob whose pod runs one of Ferry's
programs (restricted Pod Security, read-only root, one scratch emptyDir), plus the
ServiceAccount, Role and RoleBinding it runs with.

Least privilege: the Role allows exactly one thing, ``patch`` on ``inferenceservices/status`` of
this one InferenceService (``resourceNames``); the pod reads nothing else from the apiserver.
Each monitor has its own ServiceAccount, so removing one leaves the other's access alone.
"""

from __future__ import annotations

from ferry.builders.labels import OWNER_UID, child_labels, owner_reference

KIND = "InferenceService"
COMPONENT = "ferry.dev/component"
RUN_AS_USER = 65532


def monitor_labels(infsvc_name: str, component: str, **extra: str) -> dict[str, str]:
    return child_labels(KIND, infsvc_name, **{COMPONENT: component}, **extra)


def monitor_objects(infsvc: dict, child: str, component: str, schedule: str, container: dict,
                    scratch: str) -> list[dict]:
    """ServiceAccount, Role, RoleBinding and CronJob named ``child``. ``container`` gets the
    security context and the scratch mount at ``scratch`` (the only writable path; not /tmp
    itself: a mount over /tmp would also hide other volumes' sources on Ferry's local pod
    runner, whose state lives in /tmp)."""
    name, namespace = infsvc["metadata"]["name"], infsvc["metadata"]["namespace"]

    def metadata() -> dict:
        return {"name": child, "namespace": namespace, "labels": monitor_labels(name, component),
                "ownerReferences": [owner_reference(infsvc)]}

    container = {
        **container,
        "volumeMounts": [{"name": "scratch", "mountPath": scratch}],
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
    }
    pod = {
        "metadata": {"labels": monitor_labels(name, component)},
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
            "schedule": schedule,
            "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 600,
            "successfulJobsHistoryLimit": 3,
            "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": monitor_labels(
                    name, component, **{OWNER_UID: infsvc["metadata"]["uid"]})},
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

