"""Handles on the local cluster and on operator processes, shared by the integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import requests
from kubernetes import client

from ferry.dev.controlplane import LocalCluster
from ferry.dev.processes import free_port
from support.waiting import wait_for


@dataclass
class ClusterHandle:
    local: LocalCluster
    api_client: client.ApiClient

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

    @property
    def runner_node(self) -> str:
        return self.local.runner_node

    def kubectl(self, *args: str, check: bool = True, input: str | None = None):
        return self.local.kubectl(*args, check=check, input=input)


def create_namespace(cluster: ClusterHandle, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.kubectl("create", "namespace", name)
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
