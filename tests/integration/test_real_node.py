"""The real node: Ferry's image runs under kubelet + containerd with the securityContext and
limits a pod asks for; Services answer through kube-proxy, names through CoreDNS; EndpointSlices
are the controller's; ``kubectl logs`` and ``kubectl exec`` work; Pod Security is enforced."""

from __future__ import annotations

import json

import requests

from ferry.status import find_condition

from support.objects import apply_manifests, get_resource
from support.waiting import TerminalState, wait_for

RESTRICTED = {
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_RESTRICTED = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]}}


def web_deployment(namespace: str, image: str) -> list[dict]:
    labels = {"app": "web"}
    return [
        {"apiVersion": "apps/v1", "kind": "Deployment",
         "metadata": {"name": "web", "namespace": namespace},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {"securityContext": RESTRICTED, "containers": [{
                 "name": "web", "image": image, "imagePullPolicy": "Never",
                 "command": ["python", "-m", "http.server", "8080", "--directory", "/opt/ferry"],
                 "ports": [{"containerPort": 8080}],
                 "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1},
                 "resources": {"limits": {"memory": "128Mi", "cpu": "500m"}},
                 "securityContext": CONTAINER_RESTRICTED}]}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": namespace},
         "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": 8080}]}},
    ]


def answered(url: str) -> requests.Response | None:
    try:
        return requests.get(url, timeout=10)
    except requests.ConnectionError:
        return None


def ready_pod(cluster, namespace: str, selector: str) -> dict:
    def find():
        pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", selector,
                                          "-o", "json").stdout)["items"]
        for pod in pods:
            for status in pod.get("status", {}).get("containerStatuses", []):
                waiting = (status.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in ("ErrImageNeverPull", "CrashLoopBackOff",
                                             "CreateContainerConfigError", "CreateContainerError"):
                    raise TerminalState(f"pod {pod['metadata']['name']}: {status}")
            if any(c["type"] == "Ready" and c["status"] == "True"
                   for c in pod.get("status", {}).get("conditions", [])):
                return pod
        return None
    return wait_for(find, timeout=180, message=f"a Ready pod {selector} in {namespace}")


def test_ferry_image_serves_through_a_service_with_dns_logs_and_exec(cluster, namespace):
    apply_manifests(cluster, *web_deployment(namespace, cluster.image))
    pod = ready_pod(cluster, namespace, "app=web")
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == cluster.local.node.name

    # The image's USER (the pod sets none), enforced by the runtime, and the read-only root.
    uid = cluster.kubectl("exec", "-n", namespace, name, "--", "python", "-c",
                          "import os; print(os.getuid())").stdout.strip()
    assert uid == "65532"
    read_only = cluster.kubectl("exec", "-n", namespace, name, "--", "python", "-c",
                                "open('/x', 'w')", check=False)
    assert read_only.returncode != 0 and "Read-only file system" in read_only.stderr

    # The Service's ClusterIP through kube-proxy, from the test client.
    service = get_resource(cluster, namespace, "service", "web")
    # A Ready pod is in the EndpointSlice before kube-proxy has written its rules (until then the
    # ClusterIP refuses): wait for the rules, then the answer must be right.
    answer = wait_for(lambda: answered(f"http://{service['spec']['clusterIP']}/"), timeout=60,
                      message="the Service's ClusterIP answers through kube-proxy")
    assert answer.status_code == 200 and "bin/" in answer.text

    # The EndpointSlice controller's slice names the pod's IP.
    slices = json.loads(cluster.kubectl(
        "get", "endpointslices", "-n", namespace, "-l", "kubernetes.io/service-name=web",
        "-o", "json").stdout)["items"]
    addresses = {a for s in slices for e in s.get("endpoints", []) for a in e["addresses"]}
    assert addresses == {pod["status"]["podIP"]}

    # Cluster DNS from inside a pod: the Service's name resolves to its ClusterIP.
    resolved = cluster.kubectl("exec", "-n", namespace, name, "--", "python", "-c",
                               f"import socket; print(socket.gethostbyname("
                               f"'web.{namespace}.svc.cluster.local'))").stdout.strip()
    assert resolved == service["spec"]["clusterIP"]
    short = cluster.kubectl("exec", "-n", namespace, name, "--", "python", "-c",
                            "import urllib.request; print(urllib.request.urlopen("
                            "'http://web/', timeout=10).status)").stdout.strip()
    assert short == "200"

    # kubectl logs reaches the kubelet: the server logged the requests above.
    logs = cluster.kubectl("logs", "-n", namespace, name).stdout
    assert '"GET / HTTP/1.1" 200' in logs


def test_restricted_pod_security_rejects_a_privileged_pod(cluster, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "root", "namespace": namespace},
           "spec": {"containers": [{"name": "c", "image": cluster.image,
                                    "securityContext": {"privileged": True}}]}}
    result = cluster.kubectl("apply", "-f", "-", input=json.dumps(pod), check=False)
    assert result.returncode != 0
    assert "violates PodSecurity \"restricted:latest\"" in result.stderr
    assert "privileged" in result.stderr


def test_a_trainer_over_its_memory_limit_ends_oomkilled(cluster, namespace, operator):
    """The kernel's OOM killer, through containerd and kubelet, reaches the TrainingRun's status."""
    run = {"apiVersion": "ferry.dev/v1alpha1", "kind": "TrainingRun",
           "metadata": {"name": "greedy", "namespace": namespace},
           "spec": {"image": cluster.image,
                    "command": ["python", "-c", "b = bytearray(1 << 30); print(len(b))"],
                    "resources": {"cpu": "500m", "memory": "96Mi"}, "backoffLimit": 0}}
    apply_manifests(cluster, run)

    def failed():
        obj = get_resource(cluster, namespace, "trainingrun.ferry.dev", "greedy")
        phase = obj.get("status", {}).get("phase")
        if phase == "Succeeded":
            raise TerminalState(f"a run over its memory limit Succeeded: {obj['status']}")
        return obj if phase == "Failed" else None

    obj = wait_for(failed, timeout=240, message="the greedy TrainingRun to fail")
    condition = find_condition(obj["status"]["conditions"], "Succeeded")
    assert (condition["status"], condition["reason"]) == ("False", "OOMKilled"), condition
    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l",
                                      "job-name=greedy", "-o", "json").stdout)["items"]
    terminated = pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) == ("OOMKilled", 137)
    assert pods[0]["spec"]["nodeName"] == cluster.local.node.name
