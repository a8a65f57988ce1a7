"""The local pod runner executes pods for real, driven by the Job and Deployment controllers."""

from __future__ import annotations

import json
import urllib.request

import yaml

from ferry.dev.podspec import log_path
from support.waiting import wait_for

POD_IP_ENV = {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}


def job(name: str, code: str, **pod_spec) -> dict:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "python:3.11",
                            "command": ["python", "-c", code], **pod_spec.pop("container", {})}],
            **pod_spec}}},
    }


def apply(cluster, namespace, *objects):
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))


def get_json(cluster, namespace, *what) -> dict:
    return json.loads(cluster.kubectl("get", *what, "-n", namespace, "-o", "json").stdout)


def job_condition(cluster, namespace, name) -> str | None:
    status = get_json(cluster, namespace, "job", name).get("status", {})
    for condition in status.get("conditions", []):
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return condition["type"]
    return None


def only_pod(cluster, namespace, selector) -> dict:
    pods = get_json(cluster, namespace, "pods", "-l", selector)["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def read_log(cluster, pod, container="main") -> str:
    meta = pod["metadata"]
    path = log_path(cluster.state_dir / "runner", meta["namespace"], meta["name"], meta["uid"],
                    container)
    return path.read_text()


def test_job_runs_python_and_succeeds_with_its_output_readable(cluster, namespace):
    apply(cluster, namespace, job("hello", "import os; print('hello from', os.environ['POD_IP'])",
                                  container={"env": [POD_IP_ENV]}))
    wait_for(lambda: job_condition(cluster, namespace, "hello") == "Complete", timeout=60,
             message="Job Complete")
    pod = only_pod(cluster, namespace, "job-name=hello")
    assert pod["spec"]["nodeName"] == cluster.runner_node
    assert pod["status"]["phase"] == "Succeeded"
    assert read_log(cluster, pod).strip() == f"hello from {pod['status']['podIP']}"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")


def test_failing_job_ends_failed_with_the_exit_code(cluster, namespace):
    apply(cluster, namespace, job("fails", "import sys; print('bad input'); sys.exit(3)"))
    wait_for(lambda: job_condition(cluster, namespace, "fails") == "Failed", timeout=60,
             message="Job Failed")
    pod = only_pod(cluster, namespace, "job-name=fails")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert "bad input" in read_log(cluster, pod)


def test_deployment_pods_become_ready_and_answer_http_on_their_own_ips(cluster, namespace):
    server = ("import http.server, os\n"
              "class H(http.server.BaseHTTPRequestHandler):\n"
              "    def do_GET(self):\n"
              "        body = os.environ['POD_NAME'].encode()\n"
              "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
              "http.server.HTTPServer((os.environ['POD_IP'], 8080), H).serve_forever()\n")
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{
                     "name": "web", "image": "python:3.11", "command": ["python", "-c", server],
                     "ports": [{"name": "http", "containerPort": 8080}],
                     "env": [POD_IP_ENV, {"name": "POD_NAME", "valueFrom": {
                         "fieldRef": {"fieldPath": "metadata.name"}}}],
                     "readinessProbe": {"httpGet": {"path": "/", "port": "http"},
                                        "periodSeconds": 1}}]}}},
    }
    apply(cluster, namespace, deployment)
    wait_for(lambda: get_json(cluster, namespace, "deployment", "web")["status"].get(
        "readyReplicas") == 2, timeout=60, message="2 ready replicas")
    pods = get_json(cluster, namespace, "pods", "-l", "app=web")["items"]
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2
    for pod in pods:
        url = f"http://{pod['status']['podIP']}:8080/"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.read().decode() == pod["metadata"]["name"]


def test_volumes_env_and_in_cluster_config_work_for_real(cluster, namespace):
    rbac = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
         "data": {"mode": "fast", "threshold": "0.5"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
         "stringData": {"password": "s3cr3t"}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "pod-reader"},
         "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "pod-reader"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
         "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]},
    ]
    code = (
        "import json, os, ssl, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "ns = open(sa + '/namespace').read()\n"
        "ctx = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "url = 'https://%s:%s/api/v1/namespaces/%s/pods/%s' % (\n"
        "    os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT'],\n"
        "    ns, os.environ['POD_NAME'])\n"
        "token = open(sa + '/token').read()\n"
        "req = urllib.request.Request(url, headers={'Authorization': 'Bearer ' + token})\n"
        "me = json.load(urllib.request.urlopen(req, context=ctx))\n"
        "print(json.dumps({'self': me['metadata']['name'], 'mode': open('/etc/app/mode').read(),\n"
        "  'password': open('/etc/creds/password').read(), 'env_threshold': os.environ['CFG_threshold'],\n"
        "  'secret_env': os.environ['PASSWORD'], 'greeting': os.environ['GREETING']}))\n")
    pod_job = job("incluster", code, volumes=[
        {"name": "settings", "configMap": {"name": "settings"}},
        {"name": "creds", "secret": {"secretName": "creds"}}],
        container={
            "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds",
                                                                        "key": "password"}}},
                    {"name": "GREETING", "value": "hi $(POD_NAME)"}],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CFG_"}],
            "volumeMounts": [{"name": "settings", "mountPath": "/etc/app", "readOnly": True},
                             {"name": "creds", "mountPath": "/etc/creds", "readOnly": True}]})
    apply(cluster, namespace, *rbac, pod_job)
    wait_for(lambda: job_condition(cluster, namespace, "incluster") is not None, timeout=60,
             message="Job finished")
    pod = only_pod(cluster, namespace, "job-name=incluster")
    output = read_log(cluster, pod)
    assert job_condition(cluster, namespace, "incluster") == "Complete", output
    result = json.loads(output)
    assert result == {"self": pod["metadata"]["name"], "mode": "fast", "password": "s3cr3t",
                      "env_threshold": "0.5", "secret_env": "s3cr3t",
                      "greeting": f"hi {pod['metadata']['name']}"}


def test_same_mount_path_shows_each_pod_its_own_content(cluster, namespace):
    objects = []
    for name in ("alpha", "beta"):
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name},
                        "data": {"who": name}})
        objects.append(job(name, "print(open('/etc/who/who').read())",
                           volumes=[{"name": "who", "configMap": {"name": name}}],
                           container={"volumeMounts": [{"name": "who", "mountPath": "/etc/who"}]}))
    apply(cluster, namespace, *objects)
    for name in ("alpha", "beta"):
        wait_for(lambda n=name: job_condition(cluster, namespace, n) == "Complete", timeout=60,
                 message=f"{name} Complete")
        assert read_log(cluster, only_pod(cluster, namespace, f"job-name={name}")).strip() == name


def test_restart_policy_on_failure_restarts_until_success(cluster, namespace):
    code = ("import os, pathlib, sys\n"
            "marker = pathlib.Path('/scratch/attempts')\n"
            "n = int(marker.read_text()) + 1 if marker.exists() else 1\n"
            "marker.write_text(str(n)); print('attempt', n); sys.exit(0 if n >= 2 else 1)\n")
    retrying = job("retry", code, volumes=[{"name": "scratch", "emptyDir": {}}],
                   container={"volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]})
    retrying["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    retrying["spec"]["backoffLimit"] = 3
    apply(cluster, namespace, retrying)
    wait_for(lambda: job_condition(cluster, namespace, "retry") == "Complete", timeout=90,
             message="Job Complete after a restart")
    pod = only_pod(cluster, namespace, "job-name=retry")
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 1
    assert read_log(cluster, pod).split() == ["attempt", "1", "attempt", "2"]


def test_missing_command_is_reported_not_crashed(cluster, namespace):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nocmd"},
           "spec": {"containers": [{"name": "main", "image": "nginx"}]}}
    apply(cluster, namespace, pod)

    def waiting():
        status = get_json(cluster, namespace, "pod", "nocmd")["status"]
        state = status["containerStatuses"][0]["state"].get("waiting", {})
        return state if state.get("reason") == "CreateContainerConfigError" else None

    state = wait_for(waiting, timeout=30, message="CreateContainerConfigError")
    assert "ignores images" in state["message"]
