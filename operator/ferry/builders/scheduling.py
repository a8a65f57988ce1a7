"""Where pods may run, the same for every kind that starts them (pure)."""

from __future__ import annotations

from ferry.api.common import Toleration

GPU = "nvidia.com/gpu"


def tolerations(given: list[Toleration], gpus: int) -> list[dict]:
    """The spec's tolerations; a pod that asks for GPUs also tolerates the GPU nodes' taint
    (``nvidia.com/gpu:NoSchedule``, as the NVIDIA operator and KWOK's GPU nodes set it)."""
    result = [t.model_dump(by_alias=True, exclude_none=True) for t in given]
    if gpus and not any(t.get("key") == GPU for t in result):
        result.append({"key": GPU, "operator": "Exists", "effect": "NoSchedule"})
    return result
