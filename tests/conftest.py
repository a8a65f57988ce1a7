"""Shared fixtures. The cluster ones start a real control plane, once per session, only when a
test asks for them; the session operator watches the namespaces matching ``ft-*`` (the ones
``namespace`` creates), so tests that run their own operators use other namespaces.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# tests/support is importable as `support` from every test tier.
sys.path.insert(0, str(Path(__file__).parent))

from kubernetes import config as kube_config  # noqa: E402

from ferry.dev.controlplane import LocalCluster, ensure_binaries  # noqa: E402
from ferry.dev.devenv import install_crds  # noqa: E402
from support.cluster import (  # noqa: E402
    ClusterHandle, OperatorProcess, create_namespace, start_operator)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> ClusterHandle:
    state_dir = tmp_path_factory.mktemp("cluster")
    local = LocalCluster(state_dir, name=f"ferry-it-{os.getpid()}", bin_dir=ensure_binaries())
    try:
        local.start()
        install_crds(local)
        api_client = kube_config.new_client_from_config(config_file=str(local.kubeconfig))
        yield ClusterHandle(local, api_client)
    finally:
        local.stop()


@pytest.fixture
def namespace(cluster: ClusterHandle) -> str:
    name = create_namespace(cluster, "ft")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(cluster: ClusterHandle, services, tmp_path_factory) -> OperatorProcess:
    handle = start_operator(cluster, tmp_path_factory.mktemp("operator"), "ft-*",
                            FERRY_LEASE_NAME="ferry-session-operator", **services.env())
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """Real S3 (SeaweedFS), MLflow, Prometheus and Pushgateway on loopback, once per session."""
    from ferry.dev.services import DevServices, ensure_debian_packages

    ensure_debian_packages()
    running = DevServices(tmp_path_factory.mktemp("services")).start()
    yield running
    running.stop()
