"""Shared fixtures. The cluster ones start a real control plane with a real node, once per
session, only when a test asks for them; the session operator watches the namespaces matching
``ft-*`` (the ones ``namespace`` creates, each enforcing Pod Security ``restricted``), so tests
that run their own operators use other namespaces.

The whole session runs inside a network namespace of its own (``ferry_dev.netns``), entered before
any test starts a thread: the cluster, its pods and Service IPs, the services and the test client
all live there, and nothing the tests start reaches the machine's own network.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# tests/support is importable as `support` from every test tier.
sys.path.insert(0, str(Path(__file__).parent))

from kubernetes import config as kube_config  # noqa: E402

from ferry_dev import netns  # noqa: E402
from ferry_dev.controlplane import LocalCluster, ensure_binaries  # noqa: E402
from ferry_dev.devenv import demo_images, install_crds  # noqa: E402
from support.cluster import (  # noqa: E402
    ClusterHandle, OperatorProcess, create_namespace, start_operator)

SESSION_NETNS = f"ferry-test-{os.getpid()}"


def pytest_configure(config):
    if os.geteuid() == 0 and sys.platform == "linux":
        netns.enter(SESSION_NETNS)


def pytest_unconfigure(config):
    netns.delete(SESSION_NETNS)


@pytest.fixture(scope="session")
def ferry_image():
    """Ferry's image, built from the Dockerfile (cached by content), for the real node."""
    from ferry_dev.image import ensure_ferry_image

    return ensure_ferry_image()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory, ferry_image) -> ClusterHandle:
    if not netns.inside(SESSION_NETNS):
        pytest.fail("integration tests run as root inside the harness network namespace "
                    "(`make integration`, or pytest as root)")
    state_dir = tmp_path_factory.mktemp("cluster")
    local = LocalCluster(state_dir, name=f"ferry-it-{os.getpid()}", bin_dir=ensure_binaries(),
                         bind_address="0.0.0.0", advertise_address=netns.NODE_IP,
                         real_node=True,
                         images=demo_images(ferry_image.reference, ferry_image.path))
    try:
        local.start()
        install_crds(local)
        api_client = kube_config.new_client_from_config(config_file=str(local.kubeconfig))
        yield ClusterHandle(local, api_client, ferry_image.reference)
    finally:
        local.stop()


@pytest.fixture
def namespace(cluster: ClusterHandle) -> str:
    name = create_namespace(cluster, "ft")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def operator(cluster: ClusterHandle, services, tmp_path_factory) -> OperatorProcess:
    # A renew deadline longer than the apiserver outage of test_outages.py: past it the operator
    # exits (fenced, for its Deployment to restart it), and the session's tests share this one.
    handle = start_operator(cluster, tmp_path_factory.mktemp("operator"), "ft-*",
                            FERRY_LEASE_NAME="ferry-session-operator",
                            FERRY_LEASE_DURATION_SECONDS="45", FERRY_RENEW_DEADLINE_SECONDS="30",
                            FERRY_IMAGE=cluster.image, **services.env())
    yield handle
    handle.stop()


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """Real S3 (SeaweedFS), MLflow, Prometheus and Pushgateway on loopback, once per session."""
    from ferry_dev.services import DevServices, ensure_debian_packages

    ensure_debian_packages()
    host = netns.NODE_IP if netns.inside(SESSION_NETNS) else "127.0.0.1"
    running = DevServices(tmp_path_factory.mktemp("services"), host=host).start()
    yield running
    running.stop()
