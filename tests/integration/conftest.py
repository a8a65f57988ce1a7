"""Integration fixtures: one real control plane per session, a fresh namespace per test.

The session operator watches the namespaces matching ``ft-*`` (the ones ``namespace`` creates), so
tests that run their own operator instances use other namespaces and never share objects with it.
"""

from __future__ import annotations

import os

import pytest
from kubernetes import config as kube_config

from ferry.dev.controlplane import LocalCluster, ensure_binaries
from ferry.dev.devenv import install_crds
from support.cluster import ClusterHandle, OperatorProcess, create_namespace, start_operator


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


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
def operator(cluster: ClusterHandle, tmp_path_factory) -> OperatorProcess:
    handle = start_operator(cluster, tmp_path_factory.mktemp("operator"), "ft-*",
                            FERRY_LEASE_NAME="ferry-session-operator")
    yield handle
    handle.stop()
