"""Handles on the local cluster and on operator processes, shared by the integration tests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests
import yaml
from kubernetes import client

from ferry_dev.controlplane import LocalCluster, pod_security_namespace
from ferry_dev.processes import free_port
from ferry_dev.tools import render_chart
from support.waiting import wait_for


# The released image name: the harness loads the local build of the Dockerfile under it (and under
# its content reference), as the operator's default FERRY_IMAGE and the examples name it.
IMAGE = "ghcr.io/ferry-dev/ferry:0.1.0"
# Where the test operators' ServiceAccounts, Leases and leader-election Roles live, as a release's.
OPERATOR_NAMESPACE = "ferry-system"
# RBAC's refusal ("... is forbidden: User "system:serviceaccount:..." cannot create resource ..."),
# not the other 403s (a namespace being deleted refuses new Events to everyone).
FORBIDDEN = re.compile(r"User \S+ cannot [a-z]+ resource")
# Where kopf's "Failed to post an event" line starts quoting the Event it could not post.
QUOTED_EVENT = "Event: type="
# When the apiserver was coming back from a restart: it takes requests before its RBAC caches
# hold the roles and refuses everyone meanwhile, which says nothing about the operator's rules.
COLD_APISERVER: list[tuple[datetime, datetime]] = []
# The namespaces create_namespace makes: a log line naming only others is another test's.
TEST_NAMESPACE = re.compile(r"\b[a-z0-9]+-[0-9a-f]{8}\b")


@dataclass
class ClusterHandle:
    local: LocalCluster
    api_client: client.ApiClient
    image: str = ""  # Ferry's image, loaded on the real node

    @property
    def kubeconfig(self) -> str:
        return str(self.local.kubeconfig)

    @property
    def server(self) -> str:
        return self.local.server()

    @property
    def bin_dir(self) -> Path:
        return self.local.bin_dir

    @property
    def state_dir(self) -> Path:
        return self.local.state_dir

    def kubectl(self, *args: str, check: bool = True, input: str | None = None):
        return self.local.kubectl(*args, check=check, input=input)

    def restart_apiserver(self, down_seconds: float) -> None:
        """Kill and restart kube-apiserver; returns once it authorizes by the chart's roles again
        (the window until then is left out of the operators' 403 checks)."""
        started = datetime.now(UTC)
        self.local.restart_apiserver(down_seconds=down_seconds)
        wait_for(lambda: self.kubectl(
            "auth", "can-i", "list", "namespaces", "--as",
            f"system:serviceaccount:{OPERATOR_NAMESPACE}:ferry-session-operator",
            check=False).stdout.strip() == "yes", timeout=60, message="RBAC served again")
        COLD_APISERVER.append((started, datetime.now(UTC) + timedelta(seconds=2)))


def create_namespace(cluster: ClusterHandle, prefix: str, pod_security: str = "restricted") -> str:
    """A fresh namespace enforcing a Pod Security level: every pod Ferry creates passes
    ``restricted``, as platform teams require; its ordinary pods run on the real node."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("apply", "-f", "-", input=json.dumps(pod_security_namespace(name, pod_security)))
    wait_for(lambda: cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0,
             timeout=30, message=f"default ServiceAccount in {name}")
    return name


@dataclass
class OperatorProcess:
    process: subprocess.Popen
    metrics_port: int
    log_path: Path
    argv: list[str]
    env: dict[str, str]

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self) -> str:
        return requests.get(self.metrics_url, timeout=5).text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def exceptions(self, since: int, namespace: str) -> list[str]:
        """Log lines after byte ``since`` that report an error or carry a traceback, about
        ``namespace`` or about no test namespace at all (the operator itself)."""
        with open(self.log_path, "rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        found = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                entry = None
            if isinstance(entry, dict):
                failed = (entry.get("level") in ("error", "critical") or "exc" in entry
                          or str(entry.get("msg", "")).startswith("reconcile failed"))
            else:
                failed = "Traceback" in line
            named = set(TEST_NAMESPACE.findall(line))
            if failed and (namespace in named or not named):
                found.append(line)
        return found

    def forbidden(self) -> list[str]:
        """Log lines where RBAC refused the operator: a rule missing from rbac.py. A line about an
        Event that could not be posted is judged by its own refusal, not by the Event's message,
        which may quote an older one (a reconcile refused while the apiserver was cold)."""
        return [line for line in self.log().splitlines()
                if FORBIDDEN.search(line.partition(QUOTED_EVENT)[0]) and not logged_while_cold(line)]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Stop the process; a 403 anywhere in its log fails the test that ran it."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout)
        refused = self.forbidden()
        assert not refused, f"the operator lacked permissions ({self.log_path}): {refused[:5]}"
        return code

    def restart(self) -> OperatorProcess:
        """A new process with the same identity, settings and log, once this one has stopped:
        the operator coming back after a crash (a pod restarted by its Deployment)."""
        assert self.process.poll() is not None, "restart() follows stop()"
        return launch_operator(self.argv, self.env, self.metrics_port, self.log_path)


def logged_while_cold(line: str) -> bool:
    try:
        at = datetime.fromisoformat(json.loads(line)["ts"])
    except (ValueError, KeyError, TypeError):
        return False
    return any(start <= at <= end for start, end in COLD_APISERVER)


def operator_rbac(rendered: list[dict]) -> list[dict]:
    """The operator's ServiceAccount and Lease, its bindings and the roles they grant."""
    (account,) = [o for o in rendered if o["kind"] == "ServiceAccount"]
    subject = {"kind": "ServiceAccount", "name": account["metadata"]["name"],
               "namespace": OPERATOR_NAMESPACE}
    bindings = [o for o in rendered if o["kind"] in ("ClusterRoleBinding", "RoleBinding")
                and subject in o.get("subjects", [])]
    granted = {(b["roleRef"]["kind"], b["roleRef"]["name"],
                b["metadata"].get("namespace") if b["roleRef"]["kind"] == "Role" else None)
               for b in bindings}
    roles = [o for o in rendered if (o["kind"], o["metadata"]["name"],
                                     o["metadata"].get("namespace")) in granted]
    leases = [o for o in rendered if o["kind"] == "Lease"]
    return [account, *roles, *bindings, *leases]


def operator_identity(cluster: ClusterHandle, release: str, namespaces: str, folder: Path) -> Path:
    """A kubeconfig that authenticates as the chart's ServiceAccount of ``release``, holding exactly
    the RBAC the chart renders for watching ``namespaces`` (and its leader-election Lease), so a
    test operator has the rights an installed one has and no more."""
    watched = [name for name in namespaces.split(",") if name]
    rendered = render_chart("--set-json", f"watchNamespaces={json.dumps(watched)}",
                            release=release, namespace=OPERATOR_NAMESPACE)
    objects = operator_rbac(rendered)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": OPERATOR_NAMESPACE}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "List", "items": [namespace, *objects]}))
    (account,) = [o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"]
    token = cluster.kubectl("create", "token", account, "-n", OPERATOR_NAMESPACE,
                            "--duration", "24h").stdout.strip()
    admin = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": account,
        "clusters": [{"name": "local", "cluster": admin["clusters"][0]["cluster"]}],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": "local", "user": account}}],
    }
    path = folder / f"{release}.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def start_operator(cluster: ClusterHandle, log_dir: Path, namespaces: str, **env: str):
    """Run ``ferry operator`` as a subprocess, the way it runs in a pod: as the chart's
    ServiceAccount of the release named like its Lease (``FERRY_LEASE_NAME``), with the chart's
    RBAC; wait for /healthz."""
    port = free_port()
    log_path = log_dir / f"operator-{port}.log"
    env.setdefault("FERRY_IMAGE", cluster.image)  # the pods it creates run Ferry's image
    release = env.setdefault("FERRY_LEASE_NAME", "ferry-operator")
    kubeconfig = operator_identity(cluster, release, namespaces, log_dir)
    argv = [sys.executable, "-m", "ferry", "operator", "--kubeconfig", str(kubeconfig),
            "--metrics-port", str(port)]
    return launch_operator(argv, os.environ | {
        "FERRY_NAMESPACES": namespaces, "FERRY_LEASE_NAMESPACE": OPERATOR_NAMESPACE, **env},
        port, log_path)


def launch_operator(argv: list[str], env: dict[str, str], port: int, log_path: Path):
    """Start the process (appending to its log) and wait for /healthz."""
    process = subprocess.Popen(argv, stdout=open(log_path, "ab"), stderr=subprocess.STDOUT, env=env)
    handle = OperatorProcess(process, port, log_path, argv, env)
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, timeout=60,
             message=f"operator /healthz (log: {log_path})")
    return handle
