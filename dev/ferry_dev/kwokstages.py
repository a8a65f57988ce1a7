"""KWOK stages of the simulated fleet: a Job's pods run for a while before they complete.

With kwok's default ("fast") stages a Job pod on a KWOK node completes the moment it runs, so the
workers of a distributed run that does not fit can run one after another and look like a
successful run. Here a Job pod stays ``Running`` for ``ferry.dev/kwok-run-seconds`` (an annotation
on the pod, whole seconds) or else for the cluster's default, ``DEFAULT_RUN_SECONDS`` (20 s), or
``FERRY_KWOK_RUN_SECONDS`` when the cluster is created (the benchmarks set 0: their pods complete
at once, as before). The end is counted from the pod's ``status.startTime``, because kwok starts a
stage's delay again whenever the pod is updated while it waits. Pods not owned by a Job (a
Deployment's) keep running, as with kwok's defaults.

kwokctl drops *all* its default stages as soon as its configuration has one, so the set is kwok's
own defaults (the files of the pinned kwok module, which ``build-controlplane.sh`` copies next to
the binaries into ``<bin_dir>/stages``) with ``pod-complete`` replaced.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import yaml

log = logging.getLogger(__name__)

RUN_SECONDS_ANNOTATION = "ferry.dev/kwok-run-seconds"
RUN_SECONDS_ENV = "FERRY_KWOK_RUN_SECONDS"
DEFAULT_RUN_SECONDS = 20
# kwokctl's defaults for the binary runtime (node leases on), minus the fast pod-complete.
KWOK_DEFAULT_STAGES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-delete.yaml",
)

# As kwok's fast pod-complete, except that startedAt stays when the container started.
COMPLETE_TEMPLATE = """\
{{ $now := Now }}
{{ $root := . }}
containerStatuses:
{{ range $index, $item := .spec.containers }}
- image: {{ $item.image | Quote }}
  name: {{ $item.name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: 0
      finishedAt: {{ $now | Quote }}
      reason: Completed
      startedAt: {{ or $root.status.startTime $now | Quote }}
{{ end }}
phase: Succeeded
"""


def run_seconds_default() -> int:
    value = os.environ.get(RUN_SECONDS_ENV, "").strip()
    seconds = int(value) if value else DEFAULT_RUN_SECONDS
    if seconds < 0:
        raise ValueError(f"{RUN_SECONDS_ENV} must be >= 0, not {seconds}")
    return seconds


def pod_complete_stage(default_seconds: int = DEFAULT_RUN_SECONDS) -> dict:
    """A Job pod completes ``ferry.dev/kwok-run-seconds`` (else ``default_seconds``) after its
    ``startTime``. The jq expression yields that moment as a timestamp, which kwok turns into the
    remaining delay; an unreadable annotation falls back to the default."""
    until = (f'(.status.startTime | fromdateiso8601) + '
             f'((.metadata.annotations["{RUN_SECONDS_ANNOTATION}"] // "{default_seconds}") '
             f'| tonumber) | todateiso8601')
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "pod-complete"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": [
                {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
                {"key": ".status.phase", "operator": "In", "values": ["Running"]},
                {"key": ".metadata.ownerReferences.[].kind", "operator": "In", "values": ["Job"]},
            ]},
            "delay": {"durationMilliseconds": default_seconds * 1000,
                      "durationFrom": {"jq": {"expression": until}}},
            "next": {"statusTemplate": COMPLETE_TEMPLATE},
        },
    }


def kwok_stages(bin_dir: Path, default_seconds: int | None = None) -> list[dict]:
    """Every stage the kwok controller runs: kwok's defaults from ``<bin_dir>/stages`` and the
    waiting ``pod-complete``. None (kwokctl's own, instant pods) for a binaries folder without
    the stage files, which ``build-controlplane.sh`` never leaves."""
    root = bin_dir / "stages"
    missing = [name for name in KWOK_DEFAULT_STAGES if not (root / name).is_file()]
    if missing:
        log.warning("kwok's default stages %s are not in %s: KWOK pods will complete at once",
                    missing, root)
        return []
    stages = [yaml.safe_load((root / name).read_text()) for name in KWOK_DEFAULT_STAGES]
    seconds = run_seconds_default() if default_seconds is None else default_seconds
    return stages + [pod_complete_stage(seconds)]
