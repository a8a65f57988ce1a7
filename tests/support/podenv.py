"""A container's env as the kubelet hands it to the process: downward-API fields filled in from
the pod, ``$(VAR)`` expanded from the entries before it."""

from __future__ import annotations

import re


def kubelet_env(entries: list[dict], pod_fields: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for entry in entries:
        if "valueFrom" in entry:
            env[entry["name"]] = pod_fields[entry["valueFrom"]["fieldRef"]["fieldPath"]]
        else:
            env[entry["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                        lambda m: env.get(m[1], m[0]), entry["value"])
    return env
