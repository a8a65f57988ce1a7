"""The harness's private network namespace: the whole local cluster lives in it.

etcd, the apiserver, the controllers, containerd, kubelet, kube-proxy, the services (MLflow, S3,
Prometheus), the pods and the test client all run inside one network namespace that the harness
creates, so pod IPs (``POD_CIDR``) and Service IPs (``SERVICE_CIDR``) exist only there and
kube-proxy's rules never touch the machine's own tables. The namespace has loopback and a node
interface (a veth whose peer is inside too) carrying ``NODE_IP`` with the default route: pods reach
the node there (through the CNI bridge), and the apiserver advertises it.

A process joins with :func:`enter` (the calling thread and everything it starts afterwards); the
few steps that need the machine's own network (package downloads) go through
:func:`host_command`.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
from pathlib import Path

NETNS_DIR = Path("/run/netns")
NODE_INTERFACE = "ferry0"
NODE_IP = "10.240.0.1"
# host-local hands addresses out in turn and wraps at the range's end, which a /24 did within one
# suite: a new pod at a deleted pod's address can be unreachable until the node's neighbour entry
# for it is renewed. A /16 never wraps in a session.
POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"
DNS_SERVICE_IP = "10.96.0.10"
CLONE_NEWNET = 0x40000000
# Where a process tree that entered a harness namespace keeps a handle on the machine's own.
HOST_NETNS_ENV = "FERRY_HOST_NETNS"

# The namespace's own kernel settings (per network namespace; nothing host-wide is written).
SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.bridge.bridge-nf-call-iptables": "1",
    "net.ipv4.conf.all.route_localnet": "1",
}

def path(name: str) -> Path:
    return NETNS_DIR / name


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {result.stderr.strip()}")


def create(name: str) -> Path:
    """Create the namespace with loopback, the node interface and its route (idempotent)."""
    if not path(name).exists():
        if not Path("/proc/sys/net/bridge").exists():
            raise RuntimeError("the kernel's br_netfilter module is not loaded (modprobe "
                               "br_netfilter): kube-proxy's rules need it for bridged pod traffic")
        _ip("netns", "add", name)
        try:
            _ip("-n", name, "link", "set", "lo", "up")
            # A veth pair with both ends inside: the node interface, whose peer drops what the
            # default route sends it (there is no way out of the namespace).
            _ip("-n", name, "link", "add", NODE_INTERFACE, "type", "veth", "peer", "name",
                f"{NODE_INTERFACE}-end")
            _ip("-n", name, "addr", "add", f"{NODE_IP}/32", "dev", NODE_INTERFACE)
            for interface in (NODE_INTERFACE, f"{NODE_INTERFACE}-end"):
                _ip("-n", name, "link", "set", interface, "up")
            _ip("-n", name, "route", "add", "default", "dev", NODE_INTERFACE)
            for key, value in SYSCTLS.items():
                _ip("netns", "exec", name, "sysctl", "-qw", f"{key}={value}")
        except Exception:
            delete(name)
            raise
    return path(name)


def delete(name: str) -> None:
    if path(name).exists():
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def inside(name: str) -> bool:
    """Whether the calling thread already is in the namespace ``name``."""
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino == os.stat(path(name)).st_ino
    except FileNotFoundError:
        return False


def enter(name: str) -> None:
    """Create ``name`` when missing and move the calling thread into it. Call it before the
    process starts threads or servers: those started earlier stay in the old namespace."""
    create(name)
    if inside(name):
        return
    if HOST_NETNS_ENV not in os.environ:  # the first harness of this process tree
        handle = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        os.environ[HOST_NETNS_ENV] = f"/proc/{os.getpid()}/fd/{handle}"
    fd = os.open(path(name), os.O_RDONLY)
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into network namespace {name} failed")
    finally:
        os.close(fd)


def host_command(argv: list[str]) -> tuple[list[str], tuple[int, ...]]:
    """``argv`` run in the machine's own network namespace (downloads), with the fds to pass to
    ``subprocess`` (none); unchanged when this process never entered a harness namespace. The
    handle travels in the environment, so a harness started from inside another (the demo's,
    from a test session) still reaches the machine's network, not its parent's namespace."""
    host = os.environ.get(HOST_NETNS_ENV)
    if not host:
        return argv, ()
    return ["nsenter", f"--net={host}", "--", *argv], ()


def exec_argv(name: str, argv: list[str]) -> list[str]:
    """``argv`` run inside the namespace ``name`` from any shell (``ferry-dev shell``)."""
    return ["nsenter", f"--net={path(name)}", "--", *argv]
