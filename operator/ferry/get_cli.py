"""``ferry get KIND/NAME [--watch]``: read an object and its children, print ``ferry.tree``'s view.

``--watch`` polls (the view includes Deployments, Pods and Jobs, whose changes a watch on the one
object would miss) and redraws only when the text changes; Ctrl-C ends it with exit status 0.
"""

from __future__ import annotations

import argparse
import sys
import time

from ferry.api import GROUP, VERSION
from ferry.builders.labels import child_labels
from ferry.tree import (
    Style, render_featurepipeline, render_inferenceservice, render_modelversion, render_trainingrun)

WATCH_INTERVAL = 2.0
CLEAR = "\x1b[H\x1b[2J"


def _selector(kind: str, name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in child_labels(kind, name).items())


class Reader:
    """Reads one namespace's Ferry objects and children as the apiserver's JSON (camelCase)."""

    def __init__(self, api_client, namespace: str):
        from kubernetes import client

        self.namespace = namespace
        self.serialize = api_client.sanitize_for_serialization
        self.custom = client.CustomObjectsApi(api_client)
        self.apps = client.AppsV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.api_error = client.ApiException

    def get(self, plural: str, name: str) -> dict:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def optional(self, plural: str, name: str | None) -> dict | None:
        if not name:
            return None
        try:
            return self.get(plural, name)
        except self.api_error as error:
            if error.status == 404:
                return None
            raise

    def children(self, method, kind: str, name: str) -> list[dict]:
        listed = method(self.namespace, label_selector=_selector(kind, name))
        return self.serialize(listed)["items"]


def view(reader: Reader, kind: str, name: str, style: Style) -> list[str]:
    """The current text for one object (raises ApiException 404 when it does not exist)."""
    if kind == "InferenceService":
        return render_inferenceservice(
            reader.get("inferenceservices", name),
            reader.children(reader.apps.list_namespaced_deployment, kind, name),
            reader.children(reader.core.list_namespaced_pod, kind, name), style)
    if kind == "ModelVersion":
        obj = reader.get("modelversions", name)
        lineage = (obj.get("status") or {}).get("lineage") or {}
        spec = obj.get("spec") or {}
        return render_modelversion(
            obj, reader.optional("trainingruns", lineage.get("trainingRun") or spec.get("trainingRunRef")),
            reader.optional("featurepipelines", lineage.get("featurePipeline") or spec.get("features")),
            style)
    jobs = reader.children(reader.batch.list_namespaced_job, kind, name)
    if kind == "TrainingRun":
        return render_trainingrun(reader.get("trainingruns", name), jobs, style)
    return render_featurepipeline(reader.get("featurepipelines", name), jobs, style)


def run(args: argparse.Namespace) -> int:
    from kubernetes import client

    from ferry.targets import TargetError, connect, parse_target

    try:
        info, name = parse_target(args.target)
    except TargetError as error:
        print(f"ferry get: {error}", file=sys.stderr)
        return 2
    api_client, namespace = connect(args.kubeconfig, args.namespace)
    reader = Reader(api_client, namespace)
    tty = sys.stdout.isatty()
    style = Style(tty=tty)
    shown = None
    try:
        while True:
            try:
                text = "\n".join(view(reader, info.kind, name, style))
            except client.ApiException as error:
                if error.status != 404:
                    raise
                print(f"ferry get: {info.singular}.{GROUP}/{name} not found in namespace "
                      f"{namespace}", file=sys.stderr)
                return 1
            if text != shown:
                if args.watch and tty:
                    sys.stdout.write(CLEAR)
                elif shown is not None:
                    sys.stdout.write("\n")
                print(text, flush=True)
                shown = text
            if not args.watch:
                return 0
            time.sleep(WATCH_INTERVAL)
    except KeyboardInterrupt:
        return 0


def add_command(commands) -> None:
    parser = commands.add_parser(
        "get", help="show an object and its children as a tree: ferry get infsvc|mv|tr|fp/NAME")
    parser.add_argument("target", help="KIND/NAME, KIND one of infsvc, mv, tr, fp (or the plural, "
                        "singular or kind name)")
    parser.add_argument("--namespace", "-n")
    parser.add_argument("--watch", "-w", action="store_true", help="redraw when anything changes")
    parser.add_argument("--kubeconfig")
    parser.set_defaults(func=run)
