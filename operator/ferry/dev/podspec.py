"""Pure pod-spec logic of the local pod runner: env, volumes, IPs, status. No I/O here.

The rules follow the kubelet: ``envFrom`` first, then ``env`` in order (later wins), ``$(VAR)``
expands only variables defined earlier (``$$`` escapes, unknown references stay as written), the
service variables of the apiserver come first of all; phase and container states are derived the
way the kubelet reports them.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
_VAR = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
           "P": 10**15, "E": 10**18, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
           "Pi": 2**50, "Ei": 2**60}


class PodSpecError(Exception):
    """A pod the runner cannot run as specified; the message becomes the container's reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: ``$$`` escapes, unknown references are left as written."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR.sub(replace, value)


def parse_quantity(value: str | int | float) -> Decimal:
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _SUFFIX:
        raise ValueError(f"invalid quantity {value!r}")
    return Decimal(match.group(1)) * Decimal(_SUFFIX[match.group(2)])


def field_ref(pod: dict, path: str, pod_ip: str, host_ip: str) -> str:
    meta, spec = pod["metadata"], pod["spec"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    raise PodSpecError("CreateContainerConfigError", f"unsupported fieldRef {path!r}")


def resource_field_ref(container: dict, ref: dict, node_capacity: dict) -> str:
    kind, _, resource = ref["resource"].partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(resource)
    if value is None and kind == "limits":  # an unset limit reads as the node's allocatable
        value = node_capacity.get(resource, "0")
    if value is None:
        value = "0"
    divisor = parse_quantity(ref.get("divisor", "1"))
    result = parse_quantity(value) / divisor
    return str(int(result.to_integral_value(rounding="ROUND_CEILING")))


@dataclass
class Lookups:
    """ConfigMaps and Secrets (decoded) the pod references, fetched beforehand by the runner."""

    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)

    def key(self, source: str, name: str, key: str, optional: bool) -> str | None:
        data = (self.config_maps if source == "configMap" else self.secrets).get(name)
        if data is None or key not in data:
            if optional:
                return None
            what = f"{source} {name!r}" + ("" if data is None else f" key {key!r}")
            raise PodSpecError("CreateContainerConfigError", f"{what} not found")
        return data[key]


def resolve_env(pod: dict, container: dict, lookups: Lookups, pod_ip: str, host_ip: str,
                service_env: dict[str, str], node_capacity: dict | None = None) -> dict[str, str]:
    env = dict(service_env)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind in ("configMapRef", "secretRef"):
            if kind in source:
                ref = source[kind]
                table = lookups.config_maps if kind == "configMapRef" else lookups.secrets
                data = table.get(ref["name"])
                if data is None:
                    if ref.get("optional"):
                        continue
                    raise PodSpecError("CreateContainerConfigError",
                                       f"{kind[:-3]} {ref['name']!r} not found")
                env.update({prefix + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        if "fieldRef" in source:
            env[name] = field_ref(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        elif "resourceFieldRef" in source:
            env[name] = resource_field_ref(container, source["resourceFieldRef"],
                                           node_capacity or {})
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind = "configMap" if "configMapKeyRef" in source else "secret"
            ref = source[f"{kind}KeyRef"]
            value = lookups.key(kind, ref["name"], ref["key"], bool(ref.get("optional")))
            if value is not None:
                env[name] = value
        else:
            raise PodSpecError("CreateContainerConfigError", f"unsupported valueFrom in {name}")
    return env


def command_line(container: dict, env: dict[str, str]) -> list[str]:
    """command + args with $(VAR) expanded; the image is ignored, so a command is required."""
    argv = [expand(part, env) for part in (container.get("command") or [])]
    argv += [expand(part, env) for part in (container.get("args") or [])]
    if not container.get("command"):
        raise PodSpecError(
            "CreateContainerConfigError",
            f"container {container['name']!r} has no command: the local runner ignores images "
            "and runs the command on the host")
    return argv


# --- volumes ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: bytes
    mode: int


def select_items(data: dict[str, bytes], items: list | None, default_mode: int) -> list[FileSpec]:
    if not items:
        return [FileSpec(key, value, default_mode) for key, value in sorted(data.items())]
    return [FileSpec(item["path"], data[item["key"]], item.get("mode", default_mode))
            for item in items if item["key"] in data]


def downward_files(pod: dict, items: list, pod_ip: str, host_ip: str,
                   default_mode: int) -> list[FileSpec]:
    return [FileSpec(item["path"], field_ref(pod, item["fieldRef"]["fieldPath"], pod_ip,
                                             host_ip).encode(), item.get("mode", default_mode))
            for item in items if "fieldRef" in item]


def encode(data: dict[str, str]) -> dict[str, bytes]:
    return {k: v.encode() for k, v in data.items()}


def decode_secret(data: dict[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode(errors="replace") for k, v in (data or {}).items()}


@dataclass(frozen=True)
class Mount:
    source: str  # host path
    target: str  # path inside the container
    read_only: bool


def mounts_for(container: dict, volume_dirs: dict[str, Path]) -> list[Mount]:
    """Bind mounts for a container's volumeMounts, honouring subPath and readOnly."""
    result = []
    for mount in container.get("volumeMounts") or []:
        source = volume_dirs.get(mount["name"])
        if source is None:
            raise PodSpecError("CreateContainerConfigError",
                               f"volume {mount['name']!r} is not defined in the pod")
        if mount.get("subPath"):
            source = source / mount["subPath"]
        result.append(Mount(str(source), mount["mountPath"], bool(mount.get("readOnly"))))
    return result


# --- identity and status -------------------------------------------------------------------


def pod_ip_for(uid: str, taken: set[str]) -> str:
    """A stable loopback address per pod uid (127.1.0.1 - 127.254.255.254), unique among ``taken``."""
    digest = int(hashlib.sha256(uid.encode()).hexdigest(), 16)
    for attempt in range(1 << 16):
        n = (digest + attempt) % (254 * 256 * 254)
        ip = f"127.{n // (256 * 254) + 1}.{(n // 254) % 256}.{n % 254 + 1}"
        if ip not in taken:
            return ip
    raise RuntimeError("no free loopback pod IP")


def restart_backoff(restarts: int, base: float = 10.0, cap: float = 300.0) -> float:
    """The kubelet's crash-loop delay: 10 s doubling per restart, capped at five minutes."""
    return min(base * (2 ** max(restarts - 1, 0)), cap) if restarts > 0 else 0.0


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def terminated_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def pod_phase(policy: str, states: list[dict]) -> str:
    """Phase from container states (the dicts of containerStatuses[].state)."""
    if not states or any("waiting" in s and s["waiting"].get("reason") in (
            "ContainerCreating", "PodInitializing") for s in states):
        return "Pending"
    if any("running" in s for s in states):
        return "Running"
    terminated = [s["terminated"] for s in states if "terminated" in s]
    if len(terminated) == len(states):
        if all(t["exitCode"] == 0 for t in terminated):
            return "Succeeded" if policy != "Always" else "Running"
        if policy == "Never":
            return "Failed"
    return "Running"


def log_path(state_dir: Path, namespace: str, name: str, uid: str, container: str) -> Path:
    return pod_dir(state_dir, namespace, name, uid) / f"{container}.log"


def pod_dir(state_dir: Path, namespace: str, name: str, uid: str) -> Path:
    return Path(state_dir) / "pods" / f"{namespace}_{name}_{uid}"
