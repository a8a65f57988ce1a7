"""A real local Kubernetes control plane for tests and the demo.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok are built from the official Go
modules (``build-controlplane.sh``, cached under ``~/.cache/ferry/bin/<pins>``) and orchestrated by
kwokctl's *binary* runtime, which owns PKI, flags, free loopback ports and process lifetimes. On top
of that this module adds what Ferry needs:

- simulated KWOK nodes: CPU nodes tainted ``kwok.x-k8s.io/node=fake:NoSchedule`` and GPU nodes with
  ``nvidia.com/gpu`` capacity, the usual GPU labels and the ``nvidia.com/gpu:NoSchedule`` taint. kwok
  manages only nodes annotated ``kwok.x-k8s.io/node=fake``;
- with ``real_node``, a real node (``ferry_dev.node``: containerd, runc, CNI, kubelet,
  kube-proxy, CoreDNS) without taints, so every ordinary pod lands there and really runs from its
  image; pods for the simulated fleet tolerate the taints above.

Inside the harness network namespace (``ferry_dev.netns``) the components bind every address
(``0.0.0.0``: only that namespace has them) and the apiserver advertises the node IP, which its
certificate names together with the ``kubernetes`` Service IP, so pods reach it through
kube-proxy. Admission control is on (kwokctl turns it off by default), as on any real cluster:
ServiceAccount tokens, PodSecurity.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ferry_dev.processes import alive, exited, wait_until

if TYPE_CHECKING:
    from ferry_dev.node import RealNode

DEV_DIR = Path(__file__).resolve().parent
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
KWOK_TAINT_KEY = "kwok.x-k8s.io/node"
GPU_RESOURCE = "nvidia.com/gpu"


def cache_root() -> Path:
    return Path(os.environ.get("FERRY_CACHE", Path.home() / ".cache" / "ferry"))


def read_pins() -> dict[str, str]:
    """The pinned versions, read from the one file the build script also reads."""
    pins = {}
    for line in (DEV_DIR / "pins.env").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pins[key] = value
    return pins


def binaries_dir(pins: dict[str, str] | None = None) -> Path:
    pins = pins or read_pins()
    key = f"k8s-{pins['KUBE_VERSION']}_etcd-{pins['ETCD_VERSION']}_kwok-{pins['KWOK_VERSION']}"
    return cache_root() / "bin" / key


def ensure_binaries() -> Path:
    """Build the control-plane binaries unless the cache for the current pins is complete."""
    target = binaries_dir()
    if not (target / ".complete").exists():
        print(f"building the control plane into {target} (cold: tens of minutes)", file=sys.stderr)
        subprocess.run(["bash", str(DEV_DIR / "build-controlplane.sh")], check=True)
    return target


# --- pure builders -------------------------------------------------------------------------------


def kwokctl_config(bin_dir: Path, kube_version: str, bind_address: str = "127.0.0.1",
                   pki_dir: Path | None = None, advertise_address: str | None = None) -> list[dict]:
    """kwokctl configuration: our binaries, bound to ``bind_address`` (loopback, or every address
    inside the harness namespace: kwokctl's components reach each other on 127.0.0.1), the
    apiserver advertising ``advertise_address`` (the node IP there), admission on, kwok limited to
    annotated nodes, and the stages of ``ferry_dev.kwokstages`` (Job pods on KWOK nodes take
    time)."""
    from ferry_dev import netns
    from ferry_dev.kwokstages import kwok_stages

    advertise_address = advertise_address or bind_address
    apiserver_args = [
        {"key": "advertise-address", "value": advertise_address},
        {"key": "service-cluster-ip-range", "value": netns.SERVICE_CIDR},
    ]
    if pki_dir is not None:  # kubectl logs/exec: the apiserver authenticates to the kubelet
        apiserver_args += [{"key": "kubelet-preferred-address-types", "value": "InternalIP"},
                           {"key": "kubelet-client-certificate", "value": str(pki_dir / "admin.crt")},
                           {"key": "kubelet-client-key", "value": str(pki_dir / "admin.key")}]
    return [
        {
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokctlConfiguration",
            "options": {
                "runtime": "binary",
                "bindAddress": bind_address,
                "kubeAdmission": True,
                "kubeApiserverCertSANs": [netns.KUBERNETES_SERVICE_IP, advertise_address],
                "kubeBinaryPrefix": str(bin_dir),
                "kubectlBinary": str(bin_dir / "kubectl"),
                "etcdBinary": str(bin_dir / "etcd"),
                "kwokControllerBinary": str(bin_dir / "kwok"),
                "kubeVersion": kube_version,
                "quietPull": True,
            },
            "componentsPatches": [
                {
                    "name": "kube-apiserver",
                    "extraArgs": apiserver_args,
                },
                {"name": "etcd", "extraArgs": [{"key": "unsafe-no-fsync", "value": "true"}]},
                # One instance each: without leader election they ride out an apiserver restart
                # (a lost Lease makes them exit, and nothing here restarts them as a kubelet
                # restarts static pods).
                *({"name": name, "extraArgs": [{"key": "leader-elect", "value": "false"}]}
                  for name in ("kube-controller-manager", "kube-scheduler")),
                {
                    "name": "kwok-controller",
                    "extraArgs": [
                        {"key": "manage-all-nodes", "value": "false", "override": True},
                        {
                            "key": "manage-nodes-with-annotation-selector",
                            "value": f"{KWOK_NODE_ANNOTATION}=fake",
                        },
                    ],
                },
            ],
        },
        # kwok's default stages, but a Job pod runs for a while before it completes.
        *kwok_stages(bin_dir),
    ]


def kwok_node(name: str, *, gpus: int = 0, cpu: str = "32", memory: str = "256Gi") -> dict:
    """A simulated node. GPU nodes carry the NVIDIA labels and taint that GPU operators set."""
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "type": "kwok",
    }
    capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
    if gpus:
        labels |= {
            "nvidia.com/gpu.present": "true",
            "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
            "nvidia.com/gpu.count": str(gpus),
        }
        capacity[GPU_RESOURCE] = str(gpus)
        taints = [{"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    else:
        taints = [{"key": KWOK_TAINT_KEY, "value": "fake", "effect": "NoSchedule"}]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {KWOK_NODE_ANNOTATION: "fake"}},
        "spec": {"taints": taints},
        "status": {"capacity": capacity, "allocatable": dict(capacity)},
    }


def default_fleet(cpu_nodes: int = 2, gpu_nodes: int = 2, gpus_per_node: int = 8) -> list[dict]:
    return [kwok_node(f"kwok-cpu-{i}") for i in range(cpu_nodes)] + [
        kwok_node(f"kwok-gpu-{i}", gpus=gpus_per_node) for i in range(gpu_nodes)
    ]


# --- processes -----------------------------------------------------------------------------------


@dataclass
class LocalCluster:
    """The control plane, KWOK nodes and (with ``real_node``) the real node.

    ``state_dir`` holds kwokctl's work dir, the node's state, and ``cluster.json``
    with what ``ferry-dev status|down`` needs from another process.
    """

    state_dir: Path
    name: str = "ferry"
    fleet: list[dict] = field(default_factory=default_fleet)
    bin_dir: Path = field(default_factory=binaries_dir)
    bind_address: str = "127.0.0.1"
    advertise_address: str | None = None
    real_node: bool = False
    images: dict[str, Path] = field(default_factory=dict)
    node: RealNode | None = None

    @property
    def kwok_workdir(self) -> Path:
        return self.state_dir / "kwok"

    @property
    def kubeconfig(self) -> Path:
        return self.kwok_workdir / "clusters" / self.name / "kubeconfig.yaml"

    @property
    def pki_dir(self) -> Path:
        return self.kubeconfig.parent / "pki"

    def env(self) -> dict[str, str]:
        """Environment for kwokctl and kubectl: our binaries first on PATH."""
        return os.environ | {
            "KWOK_WORKDIR": str(self.kwok_workdir),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "KUBECONFIG": str(self.kubeconfig),
        }

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout=120):
        result = subprocess.run(
            [str(self.bin_dir / "kubectl"), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, input=input, timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({result.returncode}): "
                               f"{result.stderr.strip()}")
        return result

    def server(self) -> str:
        config = yaml.safe_load(self.kubeconfig.read_text())
        return config["clusters"][0]["cluster"]["server"]

    # -- lifecycle

    def start(self, timeout: float = 120) -> LocalCluster:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._kwokctl_create(timeout)
        wait_until(self._default_service_account_exists, timeout, "the default ServiceAccount")
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(self.fleet))
        names = [n["metadata"]["name"] for n in self.fleet]
        if self.real_node:
            self._start_real_node(timeout)
            names.append(self.node.name)
        wait_until(lambda: self._nodes_ready(names), timeout, f"nodes {names} to be Ready")
        if self.real_node:
            self._start_cluster_dns(timeout)
        self._save_state()
        return self

    def _start_real_node(self, timeout: float) -> None:
        from ferry_dev.node import RealNode, ensure_node_binaries

        self.node = RealNode(self.state_dir / "node", self.kubeconfig, self.pki_dir,
                             bin_dir=ensure_node_binaries())
        try:
            self.node.start(self.images, timeout)
        except Exception:
            self.node.stop()
            raise

    def _start_cluster_dns(self, timeout: float) -> None:
        from ferry_dev.node import coredns_manifests

        self.kubectl("apply", "-f", "-",
                     input=yaml.safe_dump_all(coredns_manifests(self.node.coredns_image())))
        result = self.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns",
                              f"--timeout={int(timeout)}s", check=False, timeout=timeout + 30)
        if result.returncode != 0:
            pods = self.kubectl("-n", "kube-system", "get", "pods", "-o", "wide", check=False)
            events = self.kubectl("-n", "kube-system", "get", "events", check=False)
            raise RuntimeError(f"CoreDNS did not become ready: {result.stderr.strip()}\n"
                               f"{pods.stdout}\n{events.stdout[-3000:]}")

    def stop(self) -> None:
        state = self._load_state()
        if self.node is not None or state.get("realNode"):
            from ferry_dev.node import RealNode

            node = self.node or RealNode(self.state_dir / "node", self.kubeconfig, self.pki_dir,
                                         bin_dir=Path(state["realNode"]["binDir"]))
            node.stop()
        if self.kubeconfig.exists():
            pids = self._component_pids()
            subprocess.run(
                [str(self.bin_dir / "kwokctl"), "delete", "cluster", "--name", self.name],
                env=self.env(), capture_output=True, text=True, timeout=120,
            )
            # kwokctl signals the components without waiting for them: wait, then insist.
            for pid in pids:
                wait_until(lambda pid=pid: exited(pid), 15, f"pid {pid} to exit", raise_=False)
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
        (self.state_dir / "cluster.json").unlink(missing_ok=True)

    def restart_apiserver(self, down_seconds: float = 5.0, timeout: float = 120) -> None:
        """Kill kube-apiserver, keep it down ``down_seconds``, and start it again with the same
        command line, environment and log: what a crash or a control-plane node reboot does to
        every client's watches and requests. SIGKILL, because a graceful stop waits up to a
        minute for the open watches to end. etcd and the other components keep running."""
        pid_file = self.kubeconfig.parent / "pids" / "kube-apiserver.pid"
        pid = int(pid_file.read_text().strip())
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
        environ = dict(entry.split(b"=", 1) for entry in
                       Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in entry)
        cwd = os.readlink(f"/proc/{pid}/cwd")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: exited(pid), 30, "kube-apiserver to exit")
        time.sleep(down_seconds)  # the outage itself
        log_path = self.kubeconfig.parent / "logs" / "kube-apiserver.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(argv, env=environ, cwd=cwd, stdout=log,
                                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        pid_file.write_text(str(process.pid))
        wait_until(lambda: self.kubectl("get", "--raw", "/readyz", check=False,
                                        timeout=10).returncode == 0, timeout,
                   "kube-apiserver ready again")

    def _component_pids(self) -> list[int]:
        pid_dir = self.kubeconfig.parent / "pids"
        return [int(p.read_text().strip()) for p in pid_dir.glob("*.pid")
                if p.read_text().strip().isdigit()]

    def is_running(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        return self.kubectl("get", "--raw", "/readyz", check=False, timeout=10).returncode == 0

    def _kwokctl_create(self, timeout: float) -> None:
        config = self.state_dir / "kwokctl.yaml"
        pins = read_pins()
        config.write_text(yaml.safe_dump_all(kwokctl_config(
            self.bin_dir, pins["KUBE_VERSION"], self.bind_address,
            self.pki_dir if self.real_node else None, self.advertise_address)))
        if self.kubeconfig.exists():  # a stale cluster from a killed session
            self.stop()
        result = subprocess.run(
            [str(self.bin_dir / "kwokctl"), "create", "cluster", "--name", self.name,
             "--config", str(config), "--wait", f"{int(timeout)}s"],
            env=self.env(), capture_output=True, text=True, timeout=timeout + 60,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"kwokctl create cluster failed ({result.returncode}):\n{result.stderr[-4000:]}"
            )

    def _default_service_account_exists(self) -> bool:
        result = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
        return result.returncode == 0

    def _nodes_ready(self, names: list[str]) -> bool:
        result = self.kubectl("get", "nodes", "-o", "json", check=False)
        if result.returncode != 0:
            return False
        ready = {
            node["metadata"]["name"]
            for node in json.loads(result.stdout)["items"]
            if any(
                c["type"] == "Ready" and c["status"] == "True"
                for c in node.get("status", {}).get("conditions", [])
            )
            and not any(
                t["key"] == "node.kubernetes.io/not-ready" for t in node["spec"].get("taints", [])
            )
        }
        return set(names) <= ready

    def _save_state(self) -> None:
        (self.state_dir / "cluster.json").write_text(json.dumps({
            "name": self.name,
            "kubeconfig": str(self.kubeconfig),
            "binDir": str(self.bin_dir),
            "realNode": {"binDir": str(self.node.bin_dir)} if self.node else None,
        }, indent=2))

    def _load_state(self) -> dict:
        path = self.state_dir / "cluster.json"
        return json.loads(path.read_text()) if path.exists() else {}


def pod_security_namespace(name: str, level: str = "restricted") -> dict:
    """A namespace that enforces (and warns at) a Pod Security level, as a platform team sets it."""
    labels = {f"pod-security.kubernetes.io/{mode}": level for mode in ("enforce", "warn")}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def remove_state(state_dir: Path) -> None:
    shutil.rmtree(state_dir, ignore_errors=True)
