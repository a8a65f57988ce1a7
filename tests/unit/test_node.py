"""The real node's configuration: what this kind of machine needs, checked without running it."""

import tomllib
from pathlib import Path

from ferry_dev import netns
from ferry_dev.controlplane import kwokctl_config, pod_security_namespace
from ferry_dev.node import (
    COREDNS_PORT, KUBELET_KERNEL_DEFAULTS, PAUSE_IMAGE, cni_conflist,
    containerd_config, coredns_manifests, kube_proxy_config, kubelet_config, kubelet_wrapper,
    node_binaries_dir)


def test_node_cache_is_keyed_by_kubernetes_containerd_and_coredns(monkeypatch, tmp_path):
    monkeypatch.setenv("FERRY_CACHE", str(tmp_path))
    path = node_binaries_dir({"KUBE_VERSION": "v1.36.3", "CONTAINERD_VERSION": "v2.4.2",
                              "COREDNS_VERSION": "v1.15.0"})
    assert path == tmp_path / "bin" / "node-k8s-v1.36.3_containerd-v2.4.2_coredns-v1.15.0"


def test_containerd_is_private_restricts_oom_score_and_uses_local_pause(tmp_path):
    config = tomllib.loads(containerd_config(tmp_path / "root", tmp_path / "state",
                                             tmp_path / "c.sock", tmp_path / "cni"))
    assert config["version"] == 4 and config["imports"] == []
    plugins = config["plugins"]
    assert plugins["io.containerd.server.v1.grpc"]["address"] == str(tmp_path / "c.sock")
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["restrict_oom_score_adj"] is True  # root lacks CAP_SYS_RESOURCE
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["SystemdCgroup"] is False and runc["Root"] == str(tmp_path / "state" / "runc")
    assert runtime["cni"]["conf_dir"] == str(tmp_path / "cni")
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == PAUSE_IMAGE


def test_kubelet_accepts_cgroup_v1_and_touches_no_host_kernel_setting(tmp_path):
    config = kubelet_config(socket=tmp_path / "c.sock", cgroup_root="/ferry-x",
                            pod_logs=tmp_path / "logs", ca_file=tmp_path / "ca.crt",
                            healthz_port=1234, resolv_conf=tmp_path / "resolv.conf")
    assert config["failCgroupV1"] is False and config["cgroupDriver"] == "cgroupfs"
    assert config["protectKernelDefaults"] is True and config["oomScoreAdj"] == 0
    assert config["cgroupRoot"] == "/ferry-x"
    assert config["podLogsDir"] == str(tmp_path / "logs")  # not the machine's /var/log/pods
    assert config["clusterDNS"] == [netns.DNS_SERVICE_IP]
    assert config["authentication"]["anonymous"]["enabled"] is False
    assert "registerWithTaints" not in config  # ordinary pods land on the real node


def test_kubelet_sees_its_kernel_defaults_only_in_its_own_mount_namespace(tmp_path):
    argv = kubelet_wrapper(tmp_path, tmp_path / "root", ["kubelet", "--v", "1"])
    assert argv[:4] == ["unshare", "--mount", "--propagation", "unchanged"]
    script = argv[argv.index("-c") + 1]
    assert script.startswith("set -e; mount --make-rprivate /proc;")
    for key in KUBELET_KERNEL_DEFAULTS:
        assert f"/proc/sys/{key}" in script
    assert argv[-3:] == ["kubelet", "--v", "1"]


def test_kube_proxy_skips_what_a_network_namespace_forbids(tmp_path):
    config = kube_proxy_config(tmp_path / "kubeconfig", 1, 2)
    assert config["conntrack"]["maxPerCore"] == 0
    assert config["oomScoreAdj"] == 0
    assert config["clusterCIDR"] == netns.POD_CIDR


def test_cni_bridge_gives_pods_the_pod_cidr_with_hairpin(tmp_path):
    bridge = cni_conflist(tmp_path)["plugins"][0]
    assert bridge["type"] == "bridge" and bridge["hairpinMode"] is True
    assert bridge["ipam"]["ranges"] == [[{"subnet": netns.POD_CIDR}]]
    assert bridge["ipam"]["dataDir"] == str(tmp_path)


def test_coredns_runs_unprivileged_behind_the_cluster_dns_ip():
    objects = {o["kind"]: o for o in coredns_manifests("ferry.local/coredns:v1")}
    service = objects["Service"]
    assert service["spec"]["clusterIP"] == netns.DNS_SERVICE_IP
    assert {p["targetPort"] for p in service["spec"]["ports"]} == {COREDNS_PORT}
    pod = objects["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert "kubernetes cluster.local" in objects["ConfigMap"]["data"]["Corefile"]


def test_cluster_in_the_namespace_advertises_the_node_ip_with_admission_and_kubelet_client():
    config = kwokctl_config(Path("/bins"), "v1.36.3", "0.0.0.0", Path("/pki"), netns.NODE_IP)[0]
    options = config["options"]
    assert options["bindAddress"] == "0.0.0.0" and options["kubeAdmission"] is True
    assert netns.KUBERNETES_SERVICE_IP in options["kubeApiserverCertSANs"]
    args = {a["key"]: a["value"] for p in config["componentsPatches"]
            if p["name"] == "kube-apiserver" for a in p["extraArgs"]}
    assert args["advertise-address"] == netns.NODE_IP
    assert args["kubelet-client-certificate"] == "/pki/admin.crt"


def test_pod_security_namespace_enforces_and_warns_at_its_level():
    labels = pod_security_namespace("team-a")["metadata"]["labels"]
    assert labels == {"pod-security.kubernetes.io/enforce": "restricted",
                      "pod-security.kubernetes.io/warn": "restricted"}
