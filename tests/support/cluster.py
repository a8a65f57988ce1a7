"""Handles on the local cluster and on operator processes, shared by the integration tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from kubernetes import client

from ferry_dev.controlplane import LocalCluster, pod_security_namespace
from ferry_dev.processes import free_port
from support.waiting import wait_for


# The released image name: the harness loads the local build of the Dockerfile under it (and under
# its content reference), as the operator's default FERRY_IMAGE and the examples name it.
IMAGE = "ghcr.io/ferry-dev/ferry:0.1.0"


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

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def metrics(self) -> str:
        return requests.get(self.metrics_url, timeout=5).text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout)


def start_operator(cluster: ClusterHandle, log_dir: Path, namespaces: str, **env: str):
    """Run ``ferry operator`` as a subprocess, the way it runs in a pod, and wait for /healthz."""
    port = free_port()
    log_path = log_dir / f"operator-{port}.log"
    env.setdefault("FERRY_IMAGE", cluster.image)  # the pods it creates run Ferry's image
    process = subprocess.Popen(
        [sys.executable, "-m", "ferry", "operator", "--kubeconfig", cluster.kubeconfig,
         "--metrics-port", str(port)],
        stdout=open(log_path, "wb"), stderr=subprocess.STDOUT,
        env=os.environ | {"FERRY_NAMESPACES": namespaces, "FERRY_LEASE_NAMESPACE": "default",
                          **env},
    )
    handle = OperatorProcess(process, port, log_path)
    wait_for(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).ok, timeout=60,
             message=f"operator /healthz (log: {log_path})")
    return handle
