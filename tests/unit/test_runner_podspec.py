from pathlib import Path

import pytest

from ferry.dev.podspec import (
    Lookups, PodSpecError, select_items, command_line, decode_secret, downward_files, expand,
    field_ref, log_path, mounts_for, parse_quantity, pod_ip_for, pod_phase, resolve_env,
    resource_field_ref, restart_backoff, should_restart)

POD = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "web"},
                 "annotations": {"team": "ml"}},
    "spec": {"nodeName": "runner", "serviceAccountName": "trainer"},
}


def env_of(container, lookups=None, service=None):
    return resolve_env(POD, container, lookups or Lookups(), "127.1.2.3", "127.0.0.1",
                       service or {})


@pytest.mark.parametrize("value,expected", [
    ("$(A)-$(B)", "1-2"), ("$$(A)", "$(A)"), ("$(MISSING)", "$(MISSING)"), ("plain", "plain"),
    ("$(A)$(A)", "11"), ("$A", "$A"),
])
def test_expand(value, expected):
    assert expand(value, {"A": "1", "B": "2"}) == expected


def test_env_from_first_then_env_in_order_with_expansion():
    lookups = Lookups(config_maps={"cfg": {"MODE": "fast", "LEVEL": "1"}})
    env = env_of({"envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "APP_"}],
                  "env": [{"name": "APP_MODE", "value": "slow"},
                          {"name": "GREETING", "value": "mode=$(APP_MODE) svc=$(KUBERNETES_SERVICE_HOST)"},
                          {"name": "LATER", "value": "$(DEFINED_AFTER)"},
                          {"name": "DEFINED_AFTER", "value": "x"}]},
                 lookups, {"KUBERNETES_SERVICE_HOST": "127.0.0.1"})
    assert env["APP_MODE"] == "slow" and env["APP_LEVEL"] == "1"
    assert env["GREETING"] == "mode=slow svc=127.0.0.1"
    assert env["LATER"] == "$(DEFINED_AFTER)"


def test_field_refs():
    assert field_ref(POD, "metadata.labels['app']", "ip", "h") == "web"
    assert field_ref(POD, "metadata.annotations['team']", "ip", "h") == "ml"
    assert field_ref(POD, "metadata.labels['nope']", "ip", "h") == ""
    assert field_ref(POD, "status.podIP", "127.1.2.3", "h") == "127.1.2.3"
    assert field_ref(POD, "spec.serviceAccountName", "ip", "h") == "trainer"
    assert field_ref(POD, "metadata.labels", "ip", "h") == 'app="web"'
    with pytest.raises(PodSpecError):
        field_ref(POD, "spec.containers", "ip", "h")


def test_secret_and_config_map_key_refs_honour_optional():
    lookups = Lookups(secrets={"db": {"password": "pw"}})
    env = env_of({"env": [
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "none", "key": "k",
                                                           "optional": True}}}]}, lookups)
    assert env["PW"] == "pw" and "OPT" not in env
    with pytest.raises(PodSpecError, match="secret 'db' key 'user' not found"):
        env_of({"env": [{"name": "U", "valueFrom": {"secretKeyRef": {"name": "db", "key": "user"}}}]},
               lookups)
    with pytest.raises(PodSpecError, match="configMapRef|configMap"):
        env_of({"envFrom": [{"configMapRef": {"name": "missing"}}]})


def test_resource_field_ref_with_divisor_and_node_default():
    container = {"resources": {"limits": {"memory": "1Gi", "cpu": "500m"}}}
    assert resource_field_ref(container, {"resource": "limits.memory", "divisor": "1Mi"}, {}) == "1024"
    assert resource_field_ref(container, {"resource": "limits.cpu"}, {}) == "1"  # rounded up
    assert resource_field_ref(container, {"resource": "limits.cpu", "divisor": "1m"}, {}) == "500"
    assert resource_field_ref({}, {"resource": "limits.cpu"}, {"cpu": "8"}) == "8"


def test_parse_quantity():
    assert parse_quantity("2Gi") == 2 * 2**30
    assert parse_quantity("250m") * 4 == 1
    with pytest.raises(ValueError):
        parse_quantity("lots")


def test_command_line_requires_a_command_and_expands_args():
    assert command_line({"name": "c", "command": ["python"], "args": ["-c", "$(X)"]},
                        {"X": "print(1)"}) == ["python", "-c", "print(1)"]
    with pytest.raises(PodSpecError, match="ignores images"):
        command_line({"name": "c", "args": ["x"]}, {})


def test_items_select_keys_paths_and_modes():
    data = {"a": b"1", "b": b"2"}
    assert [(f.path, f.content, f.mode) for f in select_items(data, None, 0o644)] == [
        ("a", b"1", 0o644), ("b", b"2", 0o644)]
    chosen = select_items(data, [{"key": "b", "path": "dir/b.txt", "mode": 0o400}], 0o644)
    assert [(f.path, f.mode) for f in chosen] == [("dir/b.txt", 0o400)]


def test_downward_files_and_secret_decoding():
    files = downward_files(POD, [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}],
                           "ip", "h", 0o644)
    assert files[0].content == b'app="web"'
    assert decode_secret({"k": "aGk="}) == {"k": "hi"}


def test_mounts_with_sub_path_and_read_only():
    mounts = mounts_for({"volumeMounts": [
        {"name": "cfg", "mountPath": "/etc/app", "readOnly": True},
        {"name": "cfg", "mountPath": "/etc/one.conf", "subPath": "one.conf"}]},
        {"cfg": Path("/vol/cfg")})
    assert [(m.source, m.target, m.read_only) for m in mounts] == [
        ("/vol/cfg", "/etc/app", True), ("/vol/cfg/one.conf", "/etc/one.conf", False)]
    with pytest.raises(PodSpecError, match="not defined"):
        mounts_for({"volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {})


def test_pod_ips_are_stable_loopback_and_unique():
    first = pod_ip_for("uid-a", set())
    assert first == pod_ip_for("uid-a", set())
    assert first.startswith("127.") and not first.startswith("127.0.")
    assert pod_ip_for("uid-a", {first}) != first
    ips = set()
    for i in range(500):
        ips.add(pod_ip_for(f"uid-{i}", ips))
    assert len(ips) == 500


def test_restart_backoff_and_policy():
    assert [restart_backoff(n) for n in range(0, 7)] == [0, 10, 20, 40, 80, 160, 300]
    assert should_restart("Always", 0) and should_restart("OnFailure", 1)
    assert not should_restart("OnFailure", 0) and not should_restart("Never", 1)


@pytest.mark.parametrize("policy,states,phase", [
    ("Never", [], "Pending"),
    ("Never", [{"waiting": {"reason": "ContainerCreating"}}], "Pending"),
    ("Never", [{"running": {}}], "Running"),
    ("Never", [{"terminated": {"exitCode": 0}}], "Succeeded"),
    ("Never", [{"terminated": {"exitCode": 0}}, {"terminated": {"exitCode": 2}}], "Failed"),
    ("Never", [{"terminated": {"exitCode": 0}}, {"running": {}}], "Running"),
    ("OnFailure", [{"terminated": {"exitCode": 1}}], "Running"),
    ("OnFailure", [{"terminated": {"exitCode": 0}}], "Succeeded"),
    ("Always", [{"terminated": {"exitCode": 0}}], "Running"),
    ("Always", [{"waiting": {"reason": "CrashLoopBackOff"}}], "Running"),
])
def test_pod_phase(policy, states, phase):
    assert pod_phase(policy, states) == phase


def test_log_path_layout():
    assert log_path(Path("/s"), "ns", "p", "u", "main") == Path("/s/pods/ns_p_u/main.log")
