"""``ferry promote|abort|pause|resume infsvc/NAME``: manual rollout control as spec patches.

Each command writes ``spec.rollout`` (the same fields Git can carry), never the status:
``promote``/``abort`` name the current candidate (``status.canaryVersion``), so the value only
ever acts on that rollout; ``pause``/``resume`` set ``spec.rollout.paused``.
"""

from __future__ import annotations

import argparse
import sys

PLURAL = "inferenceservices"


def rollout_patch(action: str, status: dict) -> dict | None:
    """The ``spec.rollout`` patch for ``action``; None when there is no candidate to act on."""
    if action in ("pause", "resume"):
        return {"paused": action == "pause"}
    candidate = status.get("canaryVersion")
    if not candidate:
        return None
    return {action: candidate}


def run(args: argparse.Namespace) -> int:
    from kubernetes import client

    from ferry.targets import TargetError, connect, parse_target

    try:
        _, name = parse_target(args.target, ("InferenceService",))
    except TargetError as error:
        print(f"ferry {args.command}: {error}\nusage: ferry {args.command} infsvc/NAME "
              "[-n NAMESPACE]", file=sys.stderr)
        return 2
    api_client, namespace = connect(args.kubeconfig, args.namespace)
    api = client.CustomObjectsApi(api_client)
    current = api.get_namespaced_custom_object("ferry.dev", "v1alpha1", namespace, PLURAL, name)
    patch = rollout_patch(args.command, current.get("status") or {})
    if patch is None:
        print(f"inferenceservice.ferry.dev/{name} has no rollout in progress", file=sys.stderr)
        return 1
    api.patch_namespaced_custom_object("ferry.dev", "v1alpha1", namespace, PLURAL, name,
                                       {"spec": {"rollout": patch}})
    what = ", ".join(f"{k}={v}" for k, v in patch.items())
    print(f"inferenceservice.ferry.dev/{name}: {args.command} (spec.rollout {what})")
    return 0


def add_commands(commands) -> None:
    helps = {"promote": "promote the candidate now (skips remaining steps and analysis)",
             "abort": "roll the candidate back; the stable version keeps serving",
             "pause": "hold the rollout at its current step",
             "resume": "continue a paused rollout"}
    for action, text in helps.items():
        parser = commands.add_parser(action, help=f"{text}: ferry {action} infsvc/NAME")
        parser.add_argument("target", help="infsvc/NAME")
        parser.add_argument("--namespace", "-n")
        parser.add_argument("--kubeconfig")
        parser.set_defaults(func=run)
