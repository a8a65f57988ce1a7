from pathlib import Path

from ferry_dev.controlplane import (
    GPU_RESOURCE, KWOK_NODE_ANNOTATION, binaries_dir, default_fleet, kwok_node, kwokctl_config,
    read_pins)


def test_pins_are_read_from_the_one_pin_file():
    pins = read_pins()
    assert pins["KUBE_VERSION"].startswith("v1.")
    assert pins["ETCD_VERSION"].startswith("v3.")
    assert set(pins) >= {"KUBE_VERSION", "ETCD_VERSION", "KWOK_VERSION"}


def test_binary_cache_is_keyed_by_every_pin(monkeypatch, tmp_path):
    monkeypatch.setenv("FERRY_CACHE", str(tmp_path))
    path = binaries_dir({"KUBE_VERSION": "v1.36.3", "ETCD_VERSION": "v3.6.10",
                         "KWOK_VERSION": "v0.8.0"})
    assert path == tmp_path / "bin" / "k8s-v1.36.3_etcd-v3.6.10_kwok-v0.8.0"


def test_gpu_node_has_capacity_labels_and_taint():
    node = kwok_node("gpu-0", gpus=4)
    assert node["status"]["capacity"][GPU_RESOURCE] == "4"
    assert node["status"]["allocatable"] == node["status"]["capacity"]
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert node["spec"]["taints"] == [
        {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}]
    assert node["metadata"]["annotations"][KWOK_NODE_ANNOTATION] == "fake"


def test_cpu_node_is_tainted_so_untolerating_pods_go_to_the_real_node():
    node = kwok_node("cpu-0")
    assert GPU_RESOURCE not in node["status"]["capacity"]
    assert node["spec"]["taints"][0]["key"] == KWOK_NODE_ANNOTATION


def test_default_fleet_has_cpu_and_gpu_nodes():
    names = [n["metadata"]["name"] for n in default_fleet(cpu_nodes=1, gpu_nodes=3)]
    assert names == ["kwok-cpu-0", "kwok-gpu-0", "kwok-gpu-1", "kwok-gpu-2"]


def test_kwokctl_config_uses_local_binaries_on_loopback_and_annotated_nodes_only():
    config = kwokctl_config(Path("/bins"), "v1.36.3")[0]
    options = config["options"]
    assert options["runtime"] == "binary"
    assert options["bindAddress"] == "127.0.0.1"
    assert options["etcdBinary"] == "/bins/etcd"
    patches = {p["name"]: p["extraArgs"] for p in config["componentsPatches"]}
    assert {"key": "advertise-address", "value": "127.0.0.1"} in patches["kube-apiserver"]
    kwok_args = {a["key"]: a for a in patches["kwok-controller"]}
    assert kwok_args["manage-all-nodes"] == {"key": "manage-all-nodes", "value": "false",
                                             "override": True}
    assert kwok_args["manage-nodes-with-annotation-selector"]["value"] == f"{KWOK_NODE_ANNOTATION}=fake"
