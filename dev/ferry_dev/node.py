"""A real Kubernetes node for the local cluster: containerd + runc, CNI, kubelet, kube-proxy and
CoreDNS, all inside the harness's network namespace (``ferry_dev.netns``).

The binaries come from ``build-node.sh`` (Go modules pinned in ``pins.env``; runc and the CNI
plugins from Debian). What this machine needs, and why each setting is there:

- cgroups are v1: kubelet ≥ 1.35 refuses them unless ``failCgroupV1: false``; the cgroupfs driver
  (no systemd), under a cgroup root of the node's own so two nodes (tests and demo) never share one;
- root lacks CAP_SYS_RESOURCE, so oom_score_adj cannot be lowered: containerd's CRI runs with
  ``restrict_oom_score_adj`` and kubelet/kube-proxy with ``oomScoreAdj: 0``;
- kubelet would rewrite host-wide kernel settings (overcommit, panic): it runs with
  ``protectKernelDefaults: true`` in a private mount namespace whose /proc/sys files hold the values
  it checks, while its root directory stays a shared mount, so the volumes it mounts are seen by
  containerd;
- ``nf_conntrack_max`` is read-only in a network namespace: kube-proxy's ``conntrack.maxPerCore: 0``.

Pods run from images loaded into containerd from local OCI archives (nothing is pulled): the pause
image and CoreDNS image are packed here from the built binaries, Ferry's image comes from
``ferry_dev.image``. CoreDNS runs as a Deployment behind the ``kube-dns`` Service.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ferry_dev import netns
from ferry_dev.processes import free_port, stop_process_group, wait_until

DEV_DIR = Path(__file__).resolve().parent
NODE_NAME = "ferry-node"
NODE_LABEL = "ferry.dev/real-node"
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = "/usr/sbin/runc"
PAUSE_IMAGE = "ferry.local/pause:1"
COREDNS_IMAGE_NAME = "ferry.local/coredns"
CONTAINERD_NAMESPACE = "k8s.io"
COREDNS_PORT = 1053
# The values kubelet's protectKernelDefaults checks; the private mount namespace shows these.
KUBELET_KERNEL_DEFAULTS = {
    "vm/overcommit_memory": "1", "vm/panic_on_oom": "0", "kernel/panic": "10",
    "kernel/panic_on_oops": "1", "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}
DEBIAN_PACKAGES = {RUNC: "runc", str(CNI_BIN_DIR / "bridge"): "containernetworking-plugins",
                   "/usr/sbin/iptables": "iptables", "/usr/sbin/conntrack": "conntrack",
                   "/usr/bin/umoci": "umoci", "/usr/bin/mmdebstrap": "mmdebstrap",
                   "/usr/bin/buildah": "buildah", "/usr/bin/skopeo": "skopeo"}


def node_binaries_dir(pins: dict[str, str] | None = None) -> Path:
    from ferry_dev.controlplane import cache_root, read_pins

    pins = pins or read_pins()
    key = (f"node-k8s-{pins['KUBE_VERSION']}_containerd-{pins['CONTAINERD_VERSION']}"
           f"_coredns-{pins['COREDNS_VERSION']}")
    return cache_root() / "bin" / key


def ensure_node_binaries() -> Path:
    """Build kubelet, kube-proxy, containerd, CoreDNS and pause unless the cache is complete."""
    target = node_binaries_dir()
    if not (target / ".complete").exists():
        print(f"building the node into {target} (cold: tens of minutes)", file=sys.stderr)
        subprocess.run(["bash", str(DEV_DIR / "build-node.sh")], check=True)
    return target


def missing_debian_packages() -> list[str]:
    return sorted({pkg for binary, pkg in DEBIAN_PACKAGES.items() if not Path(binary).exists()})


# --- pure configuration --------------------------------------------------------------------------


def containerd_config(root: Path, state: Path, socket: Path, cni_conf: Path) -> str:
    """containerd 2.4 (config version 4): private root/state/sockets and no host config imports,
    the CRI on runc with cgroupfs, the local pause image, Debian's CNI plugins."""
    cri_runtime = "plugins.'io.containerd.cri.v1.runtime'"
    return "\n".join([
        "version = 4",
        f'root = "{root}"',
        f'state = "{state}"',
        "imports = []",
        "[plugins.'io.containerd.server.v1.grpc']", f'  address = "{socket}"',
        "[plugins.'io.containerd.server.v1.ttrpc']", f'  address = "{socket}.ttrpc"',
        "[plugins.'io.containerd.internal.v1.opt']", f'  path = "{root}/opt"',
        f"[{cri_runtime}]",
        "  restrict_oom_score_adj = true",
        "  netns_mounts_under_state_dir = true",
        "  device_ownership_from_security_context = true",
        f"  cdi_spec_dirs = [\"{state}/cdi\"]",
        "  enable_unprivileged_ports = true",
        "  enable_unprivileged_icmp = true",
        f"[{cri_runtime}.containerd]", '  default_runtime_name = "runc"',
        f"[{cri_runtime}.containerd.runtimes.runc]",
        '  runtime_type = "io.containerd.runc.v2"',
        f"[{cri_runtime}.containerd.runtimes.runc.options]",
        f'  BinaryName = "{RUNC}"', "  SystemdCgroup = false", f'  Root = "{state}/runc"',
        f"[{cri_runtime}.cni]", f'  bin_dirs = ["{CNI_BIN_DIR}"]', f'  conf_dir = "{cni_conf}"',
        "[plugins.'io.containerd.cri.v1.images']", '  snapshotter = "overlayfs"',
        "[plugins.'io.containerd.cri.v1.images'.pinned_images]", f'  sandbox = "{PAUSE_IMAGE}"',
        "[plugins.'io.containerd.grpc.v1.cri']",
        '  stream_server_address = "127.0.0.1"', '  stream_server_port = "0"',
        "",
    ])


def cni_conflist(ipam_dir: Path) -> dict:
    """One bridge for the node's pods; hairpin so a pod reaches itself through its Service."""
    return {
        "cniVersion": "1.0.0",
        "name": "ferry",
        "plugins": [
            {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False,
             "hairpinMode": True,
             "ipam": {"type": "host-local", "dataDir": str(ipam_dir),
                      "ranges": [[{"subnet": netns.POD_CIDR}]],
                      "routes": [{"dst": "0.0.0.0/0"}]}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def kubelet_config(*, socket: Path, cgroup_root: str, pod_logs: Path, ca_file: Path,
                   healthz_port: int, resolv_conf: Path) -> dict:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{socket}",
        "failSwapOn": False,
        "oomScoreAdj": 0,
        "protectKernelDefaults": True,
        "podLogsDir": str(pod_logs),
        "clusterDNS": [netns.DNS_SERVICE_IP],
        "clusterDomain": "cluster.local",
        "resolvConf": str(resolv_conf),
        "address": netns.NODE_IP,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                           "x509": {"clientCAFile": str(ca_file)}},
        "authorization": {"mode": "Webhook"},
        # The disk is shared with the suite, and loaded images cannot be pulled again.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%",
                         "imagefs.available": "1%", "nodefs.inodesFree": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "serializeImagePulls": False,
        "shutdownGracePeriod": "0s",
    }


def kube_proxy_config(kubeconfig: Path, metrics_port: int, healthz_port: int) -> dict:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "hostnameOverride": NODE_NAME,
        "mode": "iptables",
        "clusterCIDR": netns.POD_CIDR,
        "oomScoreAdj": 0,
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        "iptables": {"localhostNodePorts": False},
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
    }


def coredns_manifests(image: str) -> list[dict]:
    """CoreDNS as clusters run it: a Deployment behind ``kube-dns`` at the cluster DNS IP, with
    the least privilege the kubernetes plugin needs. It listens on an unprivileged port."""
    labels = {"k8s-app": "kube-dns"}
    corefile = "\n".join([
        f".:{COREDNS_PORT} {{", "    errors", "    health :8080", "    ready :8181",
        "    kubernetes cluster.local in-addr.arpa ip6.arpa {",
        "        pods insecure", "        fallthrough in-addr.arpa ip6.arpa", "    }",
        "    cache 5", "}", ""])
    meta = {"name": "coredns", "namespace": "kube-system"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "system:coredns"},
         "rules": [{"apiGroups": [""], "resources": ["services", "pods", "namespaces"],
                    "verbs": ["list", "watch"]},
                   {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                    "verbs": ["list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "system:coredns"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "system:coredns"},
         "subjects": [{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
         "data": {"Corefile": corefile}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta | {"labels": labels},
         "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
             "metadata": {"labels": labels},
             "spec": {
                 "serviceAccountName": "coredns",
                 "dnsPolicy": "Default",
                 "nodeSelector": {NODE_LABEL: "true"},
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                     "seccompProfile": {"type": "RuntimeDefault"}},
                 "containers": [{
                     "name": "coredns", "image": image, "imagePullPolicy": "Never",
                     "args": ["-conf", "/etc/coredns/Corefile"],
                     "ports": [{"name": "dns", "containerPort": COREDNS_PORT, "protocol": "UDP"},
                               {"name": "dns-tcp", "containerPort": COREDNS_PORT,
                                "protocol": "TCP"}],
                     "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181},
                                        "periodSeconds": 1},
                     "livenessProbe": {"httpGet": {"path": "/health", "port": 8080}},
                     "resources": {"limits": {"memory": "170Mi"},
                                   "requests": {"cpu": "50m", "memory": "70Mi"}},
                     "securityContext": {"allowPrivilegeEscalation": False,
                                         "readOnlyRootFilesystem": True,
                                         "capabilities": {"drop": ["ALL"]}},
                     "volumeMounts": [{"name": "config", "mountPath": "/etc/coredns"}]}],
                 "volumes": [{"name": "config", "configMap": {"name": "coredns"}}]}}}},
        {"apiVersion": "v1", "kind": "Service",
         "metadata": meta | {"name": "kube-dns", "labels": labels},
         "spec": {"clusterIP": netns.DNS_SERVICE_IP, "selector": labels, "ports": [
             {"name": "dns", "port": 53, "targetPort": COREDNS_PORT, "protocol": "UDP"},
             {"name": "dns-tcp", "port": 53, "targetPort": COREDNS_PORT, "protocol": "TCP"}]}},
    ]


def kubelet_wrapper(kernel_dir: Path, root_dir: Path, argv: list[str]) -> list[str]:
    """kubelet in a private mount namespace whose /proc/sys files hold the values it checks;
    its root directory is a shared mount, so what it mounts there reaches containerd."""
    binds = "; ".join(f"mount --bind {kernel_dir / key.replace('/', '.')} /proc/sys/{key}"
                      for key in KUBELET_KERNEL_DEFAULTS)
    script = f"set -e; mount --make-rprivate /proc; {binds}; exec \"$@\""
    return ["unshare", "--mount", "--propagation", "unchanged", "--", "sh", "-c", script,
            "kubelet", *argv]


# --- images --------------------------------------------------------------------------------------


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-3000:]}")
    return result


def annotated_reference(archive: Path) -> str:
    """The full image reference an OCI archive's index names (what ``ctr import`` names it)."""
    with tarfile.open(archive) as tar:
        index = json.load(tar.extractfile("index.json"))
    for manifest in index.get("manifests", []):
        annotations = manifest.get("annotations", {})
        name = annotations.get("io.containerd.image.name") or annotations.get(
            "org.opencontainers.image.ref.name", "")
        if "/" in name:
            return name
    raise RuntimeError(f"{archive} names no full image reference in its index.json")


def single_binary_image(binary: Path, reference: str, out_dir: Path, *, entrypoint: list[str],
                        user: str = "65532:65532") -> Path:
    """An OCI archive holding one static binary, packed with umoci and named ``reference`` in its
    index; cached by the binary's hash and the reference."""
    digest = hashlib.sha256(binary.read_bytes() + reference.encode()).hexdigest()[:16]
    archive = out_dir / f"{binary.name}-{digest}.tar"
    if archive.exists():
        return archive
    work = out_dir / f"build-{digest}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    layer = work / "layer.tar"
    with tarfile.open(layer, "w") as tar:
        info = tar.gettarinfo(str(binary), arcname=binary.name)
        info.mode, info.uid, info.gid = 0o755, 0, 0
        with open(binary, "rb") as data:
            tar.addfile(info, data)
    layout = work / "layout"
    _run(["umoci", "init", "--layout", str(layout)])
    _run(["umoci", "new", "--image", f"{layout}:image"])
    _run(["umoci", "raw", "add-layer", "--image", f"{layout}:image", str(layer)])
    config = ["umoci", "config", "--image", f"{layout}:image", "--config.user", user]
    for arg in entrypoint:
        config += ["--config.entrypoint", arg]
    _run(config)
    index_path = layout / "index.json"
    index = json.loads(index_path.read_text())
    for manifest in index["manifests"]:
        manifest["annotations"] = {"org.opencontainers.image.ref.name": reference,
                                   "io.containerd.image.name": reference}
    index_path.write_text(json.dumps(index))
    tmp = archive.with_suffix(".tmp")
    with tarfile.open(tmp, "w") as tar:
        for item in sorted(layout.iterdir()):
            tar.add(str(item), arcname=item.name)
    tmp.rename(archive)
    shutil.rmtree(work, ignore_errors=True)
    return archive


@dataclass
class RealNode:
    """One real node joined to the local control plane, in the harness's network namespace.

    Its state (containerd root, kubelet root, pod logs, CNI state) lives under ``state_dir``;
    ``stop`` ends every process and removes the pods' containers, mounts and cgroups.
    """

    state_dir: Path
    kubeconfig: Path
    pki_dir: Path
    bin_dir: Path = field(default_factory=node_binaries_dir)
    name: str = NODE_NAME
    pids: dict[str, int] = field(default_factory=dict)
    proxy_metrics_port: int = 0

    @property
    def socket(self) -> Path:
        return self.state_dir / "containerd.sock"

    @property
    def kubelet_root(self) -> Path:
        return self.state_dir / "kubelet"

    @property
    def pod_logs(self) -> Path:
        return self.state_dir / "pod-logs"

    @property
    def cgroup_root(self) -> str:
        return f"/ferry-{hashlib.sha1(str(self.state_dir).encode()).hexdigest()[:10]}"

    def env(self) -> dict[str, str]:
        return os.environ | {"PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}

    def ctr(self, *args: str, **kwargs) -> subprocess.CompletedProcess:
        return _run([str(self.bin_dir / "ctr"), "--address", str(self.socket),
                     "--namespace", CONTAINERD_NAMESPACE, *args], **kwargs)

    # -- lifecycle

    def start(self, images: dict[str, Path] | None = None, timeout: float = 180) -> RealNode:
        """Start containerd, load the images (reference -> OCI archive), start kubelet and
        kube-proxy. The caller waits for the Node to be Ready and applies CoreDNS."""
        if missing := missing_debian_packages():
            raise RuntimeError(f"the real node needs Debian packages: {' '.join(missing)}")
        for sub in ("containerd/root", "containerd/state", "cni/conf", "cni/ipam", "kernel"):
            (self.state_dir / sub).mkdir(parents=True, exist_ok=True)
        self.kubelet_root.mkdir(parents=True, exist_ok=True)
        self.pod_logs.mkdir(parents=True, exist_ok=True)
        self._start_containerd(timeout)
        self.load_images({PAUSE_IMAGE: self.pause_archive(),
                          self.coredns_image(): self.coredns_archive(), **(images or {})})
        self._start_kubelet()
        self._start_kube_proxy()
        self._save()
        return self

    def _log(self, name: str):
        return open(self.state_dir / f"{name}.log", "ab")

    def _spawn(self, name: str, argv: list[str]) -> None:
        process = subprocess.Popen(argv, stdout=self._log(name), stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True,
                                   env=self.env(), cwd=self.state_dir)
        self.pids[name] = process.pid

    def _start_containerd(self, timeout: float) -> None:
        config = self.state_dir / "containerd.toml"
        (self.state_dir / "cni/conf/10-ferry.conflist").write_text(
            json.dumps(cni_conflist(self.state_dir / "cni/ipam"), indent=2))
        config.write_text(containerd_config(self.state_dir / "containerd/root",
                                            self.state_dir / "containerd/state", self.socket,
                                            self.state_dir / "cni/conf"))
        self._spawn("containerd", [str(self.bin_dir / "containerd"), "--config", str(config)])
        wait_until(lambda: self._containerd_ready(), timeout, "containerd to serve its socket")

    def _containerd_ready(self) -> bool:
        self._assert_alive("containerd")
        result = subprocess.run([str(self.bin_dir / "ctr"), "--address", str(self.socket),
                                 "version"], capture_output=True, text=True)
        return result.returncode == 0

    def _assert_alive(self, name: str) -> None:
        try:
            finished = os.waitpid(self.pids[name], os.WNOHANG)[0] == self.pids[name]
        except ChildProcessError:
            finished = False
        if finished:
            log = (self.state_dir / f"{name}.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} exited during start-up:\n{log}")

    def pause_archive(self) -> Path:
        return single_binary_image(self.bin_dir / "pause", PAUSE_IMAGE, self.images_dir,
                                   entrypoint=["/pause"], user="65535:65535")

    def coredns_archive(self) -> Path:
        return single_binary_image(self.bin_dir / "coredns", self.coredns_image(),
                                   self.images_dir, entrypoint=["/coredns"])

    @property
    def images_dir(self) -> Path:
        path = self.bin_dir.parent.parent / "images" / "node"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def load_images(self, images: dict[str, Path]) -> None:
        """Import OCI archives into containerd's CRI namespace under the given references
        (idempotent; nothing is ever pulled). An archive is imported under the reference its
        index names, then tagged with every other reference asked for it."""
        for archive in dict.fromkeys(images.values()):
            named = annotated_reference(archive)
            self.ctr("images", "import", str(archive))
            for ref in (r for r, a in images.items() if a == archive and r != named):
                self.ctr("images", "tag", "--force", named, ref)
        listed = set(self.ctr("images", "ls", "-q").stdout.split())
        if missing := sorted(set(images) - listed):
            raise RuntimeError(f"containerd does not list {missing} after the import")

    def coredns_image(self) -> str:
        from ferry_dev.controlplane import read_pins

        return f"{COREDNS_IMAGE_NAME}:{read_pins()['COREDNS_VERSION']}"

    def _start_kubelet(self) -> None:
        kernel = self.state_dir / "kernel"
        for key, value in KUBELET_KERNEL_DEFAULTS.items():
            (kernel / key.replace("/", ".")).write_text(value + "\n")
        resolv = self.state_dir / "resolv.conf"
        resolv.write_text(f"nameserver {netns.NODE_IP}\n")
        config = self.state_dir / "kubelet.yaml"
        config.write_text(yaml.safe_dump(kubelet_config(
            socket=self.socket, cgroup_root=self.cgroup_root, pod_logs=self.pod_logs,
            ca_file=self.pki_dir / "ca.crt", healthz_port=free_port(), resolv_conf=resolv)))
        _make_shared_mount(self.kubelet_root)
        self._create_cgroup_root()
        argv = ["--config", str(config), "--kubeconfig", str(self.kubeconfig),
                "--root-dir", str(self.kubelet_root), "--hostname-override", self.name,
                "--node-ip", netns.NODE_IP, "--node-labels", f"{NODE_LABEL}=true",
                "--v", "1"]
        self._spawn("kubelet", kubelet_wrapper(kernel, self.kubelet_root,
                                               [str(self.bin_dir / "kubelet"), *argv]))

    def _create_cgroup_root(self) -> None:
        """kubelet wants its cgroup root to exist in every v1 hierarchy; cpuset needs its CPUs
        and memory nodes set before any task can join."""
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            if hierarchy.name == "unified" or not hierarchy.is_dir():
                continue
            root = hierarchy / self.cgroup_root.lstrip("/")
            root.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":
                for key in ("cpuset.cpus", "cpuset.mems"):
                    if not (root / key).read_text().strip():
                        (root / key).write_text((hierarchy / key).read_text())

    def _start_kube_proxy(self) -> None:
        config = self.state_dir / "kube-proxy.yaml"
        self.proxy_metrics_port = free_port()
        config.write_text(yaml.safe_dump(kube_proxy_config(self.kubeconfig, self.proxy_metrics_port,
                                                           free_port())))
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), "--config", str(config)])

    def stop(self) -> None:
        state = self._load()
        pids = self.pids or state.get("pids", {})
        for name in ("kube-proxy", "kubelet"):
            if name in pids:
                stop_process_group(pids[name])
        if "containerd" in pids:
            stop_process_group(pids["containerd"])
        self._remove_pods()
        self._cleanup_host_state()
        self.pids = {}
        (self.state_dir / "node.json").unlink(missing_ok=True)

    def _remove_pods(self) -> None:
        """Kill what outlives kubelet and containerd: the containers (found by their cgroup under
        the node's root) and the runc shims (found by the node's containerd socket)."""
        mine = [f":{self.cgroup_root}/", str(self.socket)]
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                seen = (proc / "cgroup").read_text() + (proc / "cmdline").read_text()
            except OSError:
                continue
            if any(marker in seen for marker in mine):
                try:
                    os.kill(int(proc.name), 9)
                except ProcessLookupError:
                    pass

    def _cleanup_host_state(self) -> None:
        """Unmount what kubelet and containerd mounted and remove the node's cgroups."""
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(str(self.state_dir))),
                            key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        for hierarchy in Path("/sys/fs/cgroup").iterdir():
            root = hierarchy / self.cgroup_root.lstrip("/")
            if not root.is_dir():
                continue
            for directory, _, _ in os.walk(root, topdown=False):  # children first
                try:
                    os.rmdir(directory)
                except OSError:  # a process still in it: the kill above is asynchronous
                    pass

    def proxy_rules_synced_at(self) -> float:
        """When kube-proxy last wrote the Services' rules (its own metric, Unix seconds): a
        client waits for this to pass the moment an EndpointSlice changed."""
        import urllib.request

        url = f"http://127.0.0.1:{self.proxy_metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            synced = [float(line.rsplit(" ", 1)[1]) for line in
                      response.read().decode().splitlines()
                      if line.startswith("kubeproxy_sync_proxy_rules_last_timestamp_seconds")]
        return max(synced, default=0.0)  # one sample per IP family

    def _save(self) -> None:
        (self.state_dir / "node.json").write_text(json.dumps({"pids": self.pids}, indent=2))

    def _load(self) -> dict:
        path = self.state_dir / "node.json"
        return json.loads(path.read_text()) if path.exists() else {}


def _make_shared_mount(directory: Path) -> None:
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    if str(directory) not in mounts:
        _run(["mount", "--bind", str(directory), str(directory)])
    _run(["mount", "--make-rshared", str(directory)])
