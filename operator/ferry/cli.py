"""The ``ferry`` command (also the kubectl plugin ``kubectl ferry``): one console script with
subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _operator(args: argparse.Namespace) -> int:
    from ferry.config import OperatorConfig
    from ferry.controllers import manager

    config = OperatorConfig.from_env(
        namespaces=args.namespace or None,
        metrics_port=args.metrics_port,
        leader_election=False if args.no_leader_election else None,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    return manager.run(config, kubeconfig=args.kubeconfig)


def _crds(args: argparse.Namespace) -> int:
    """The CRDs, plus (in a checkout) the chart's copy, RBAC, Argo CD snippet and field reference."""
    from ferry.generate import packaging
    from ferry.generate.crds import check_crds, write_crds

    derived = packaging.applies_to(args.root)
    if args.check:
        problems = check_crds(args.dir) + (packaging.check(args.root) if derived else [])
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(f"CRDs in {args.dir} or files derived from the code are stale: run `ferry crds` "
                  "and commit the result", file=sys.stderr)
            return 1
        print(f"CRDs in {args.dir} are up to date" + (" (and the derived files)" if derived else ""))
        return 0
    write_crds(args.dir)
    if derived:
        packaging.write(args.root)
    print(f"wrote CRDs to {args.dir}" + (" and the derived files" if derived else ""))
    return 0


def _features(args: argparse.Namespace) -> int:
    from ferry import podexit
    from ferry.features import job

    return podexit.run(lambda: job.main([args.action]))


def _drift(args: argparse.Namespace) -> int:
    from ferry import podexit
    from ferry.drift import command

    return podexit.run(lambda: command.main(args))


def _quality(args: argparse.Namespace) -> int:
    from ferry import podexit
    from ferry.quality import command

    return podexit.run(lambda: command.main(args))


def _target(target: str, kind: str, usage: str) -> str | None:
    """The name in ``kind/NAME``, or None once the mistake and the usage are printed."""
    from ferry.targets import TargetError, parse_target

    try:
        return parse_target(target, (kind,))[1]
    except TargetError as error:
        command = usage.split()[1]
        print(f"ferry {command}: {error}\nusage: {usage}", file=sys.stderr)
        return None


def _approve(args: argparse.Namespace) -> int:
    """Record a human approval in the ModelVersion's spec (the Git-reviewable audit trail).

    The approver is the caller as the apiserver authenticates them (a SelfSubjectReview), which is
    what the approval admission policy (``ferry.generate.admission``) requires ``approvedBy`` to
    be. ``--by`` names someone else only where that policy is not installed (it refuses the change otherwise).
    """
    from kubernetes import client

    from ferry.targets import connect

    name = _target(args.target, "ModelVersion", "ferry approve mv/NAME [--by WHO] [--comment TEXT]")
    if name is None:
        return 2
    api_client, namespace = connect(args.kubeconfig, args.namespace)
    identity = client.AuthenticationV1Api(api_client).create_self_subject_review(
        client.V1SelfSubjectReview()).status.user_info.username
    approver = args.by or identity
    if approver != identity:
        print(f"ferry approve: approving as {approver!r} while authenticated as {identity!r}; "
              "clusters with Ferry's approval policy refuse that", file=sys.stderr)
    approval = {"approvedBy": approver, **({"comment": args.comment} if args.comment else {})}
    try:
        client.CustomObjectsApi(api_client).patch_namespaced_custom_object(
            "ferry.dev", "v1alpha1", namespace, "modelversions", name, {"spec": {"approval": approval}})
    except client.ApiException as error:
        import json

        reason = error.reason
        if error.body:
            try:
                reason = json.loads(error.body).get("message", reason)
            except ValueError:
                reason = error.body
        print(f"ferry approve: modelversion.ferry.dev/{name} not approved: {reason}", file=sys.stderr)
        return 1
    print(f"modelversion.ferry.dev/{name} approved by {approver}")
    return 0


def retrain_patch(reason: str | None, now, token: str) -> dict:
    """The merge patch that asks ``spec.retrainPolicy`` for one more run: a fresh id (the UTC time
    plus ``token``, random) is what makes it a new on-demand trigger; Git can write the same."""
    demand = {"id": f"{now.strftime('%Y%m%dT%H%M%SZ')}-{token}",
              **({"reason": reason} if reason else {})}
    return {"spec": {"retrainPolicy": {"triggers": {"onDemand": demand}}}}


def _retrain(args: argparse.Namespace) -> int:
    """Retrain an InferenceService's model now, through ``spec.retrainPolicy`` and its gates."""
    import secrets
    from datetime import UTC, datetime

    from kubernetes import client

    from ferry.targets import connect

    name = _target(args.target, "InferenceService", "ferry retrain infsvc/NAME [--reason TEXT]")
    if name is None:
        return 2
    api_client, namespace = connect(args.kubeconfig, args.namespace)
    api = client.CustomObjectsApi(api_client)
    current = api.get_namespaced_custom_object("ferry.dev", "v1alpha1", namespace,
                                               "inferenceservices", name)
    if not (current.get("spec") or {}).get("retrainPolicy"):
        print(f"inferenceservice.ferry.dev/{name} has no spec.retrainPolicy", file=sys.stderr)
        return 1
    patch = retrain_patch(args.reason, datetime.now(UTC), secrets.token_hex(3))
    api.patch_namespaced_custom_object("ferry.dev", "v1alpha1", namespace, "inferenceservices",
                                       name, patch)
    demand = patch["spec"]["retrainPolicy"]["triggers"]["onDemand"]
    print(f"inferenceservice.ferry.dev/{name}: retraining requested "
          f"(spec.retrainPolicy.triggers.onDemand.id {demand['id']})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    """Ferry's model server; flags win over the FERRY_* environment (see ferry.serving.config)."""
    from ferry.observability.logging import configure
    from ferry.serving.config import ConfigError, ServeConfig
    from ferry.serving.server import run

    try:
        config = ServeConfig.from_env(model_uri=args.model_uri, host=args.host, port=args.port,
                                      model_name=args.model_name, model_version=args.model_version,
                                      grpc_port=args.grpc_port, workers=args.workers)
    except ConfigError as error:
        print(f"ferry serve: {error}", file=sys.stderr)
        return 2
    configure(args.log_level or "INFO", args.log_format or "json")
    return run(config)


def build_parser(prog: str = "ferry") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    operator = commands.add_parser("operator", help="run the operator (kubeconfig or in-cluster)")
    operator.add_argument("--kubeconfig", help="default: in-cluster config, else $KUBECONFIG")
    operator.add_argument("--namespace", "-n", action="append",
                          help="namespace to watch (repeatable); default: all namespaces")
    operator.add_argument("--metrics-port", type=int, help="port of /metrics and /healthz")
    operator.add_argument("--no-leader-election", action="store_true")
    operator.add_argument("--log-format", choices=["json", "text"])
    operator.add_argument("--log-level")
    operator.set_defaults(func=_operator)

    crds = commands.add_parser("crds", help="generate the CRDs from the API models")
    crds.add_argument("--dir", type=Path, default=Path("crds"))
    crds.add_argument("--check", action="store_true", help="exit 1 when the files are stale")
    crds.add_argument("--root", type=Path, default=Path("."),
                      help="checkout whose chart, manifests and docs get the derived files")
    crds.set_defaults(func=_crds)

    approve = commands.add_parser("approve", help="approve a ModelVersion: ferry approve mv/NAME")
    approve.add_argument("target", help="mv/NAME")
    approve.add_argument("--by", help="who approves; default: you, as the apiserver authenticates "
                         "you (the approval policy accepts nothing else)")
    approve.add_argument("--comment")
    approve.add_argument("--namespace", "-n")
    approve.add_argument("--kubeconfig")
    approve.set_defaults(func=_approve)

    retrain = commands.add_parser(
        "retrain", help="retrain through spec.retrainPolicy now: ferry retrain infsvc/NAME")
    retrain.add_argument("target", help="infsvc/NAME")
    retrain.add_argument("--reason", help="recorded with the request and in the run's evidence")
    retrain.add_argument("--namespace", "-n")
    retrain.add_argument("--kubeconfig")
    retrain.set_defaults(func=_retrain)

    features = commands.add_parser(
        "features", help="compute/validate one FeaturePipeline run (inside its Job)")
    features.add_argument("action", choices=["run", "validate"])
    features.set_defaults(func=_features)

    serve = commands.add_parser("serve", help="serve an MLflow model (MLflow + Open Inference v2)")
    serve.add_argument("--model-uri", help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/ID/PATH, "
                       "s3://... or a path (env FERRY_MODEL_URI)")
    serve.add_argument("--host", help="address to bind (env POD_IP, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port (env FERRY_PORT, default 8080)")
    serve.add_argument("--grpc-port", type=int,
                       help="Open Inference v2 gRPC port (env FERRY_GRPC_PORT, default 8081, 0: off)")
    serve.add_argument("--workers", help="server processes, or auto for the CPUs available "
                       "(env FERRY_WORKERS, default 1)")
    serve.add_argument("--model-name", help="name in metrics, logs and /v2 (env FERRY_MODEL_NAME)")
    serve.add_argument("--model-version", help="version label (env FERRY_MODEL_VERSION)")
    serve.add_argument("--log-format", choices=["json", "text"])
    serve.add_argument("--log-level")
    serve.set_defaults(func=_serve)

    drift = commands.add_parser(
        "drift", help="compare datasets for drift (exit 0 no drift, 1 drift, 3 inconclusive, "
                      "4 error); `monitor` is what a drift CronJob's pod runs")
    drift_actions = drift.add_subparsers(dest="action", required=True)
    compare = drift_actions.add_parser("compare", help="compare two local/S3 Parquet datasets")
    compare.add_argument("--reference", required=True, help="file, directory, glob or s3:// URI")
    compare.add_argument("--current", required=True, help="file, directory, glob or s3:// URI")
    compare.add_argument("--config", help="JSON file shaped like spec.monitoring.drift")
    compare.add_argument("--out", help="write drift.json + drift.html to this dir or s3:// prefix")
    drift_actions.add_parser("monitor", help="one scheduled run, configured by FERRY_* env")
    drift.set_defaults(func=_drift)

    quality = commands.add_parser(
        "quality", help="the quality monitor: join labels with logged predictions, judge, report")
    quality_actions = quality.add_subparsers(dest="action", required=True)
    quality_actions.add_parser("run", help="one scheduled run, configured by FERRY_* env "
                                           "(what a quality CronJob's pod runs)")
    quality.set_defaults(func=_quality)
    from ferry.get_cli import add_command  # get infsvc|mv|tr|fp/NAME
    from ferry.rollout_cli import add_commands  # promote | abort | pause | resume infsvc/NAME

    add_command(commands)
    add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Installed as `kubectl-ferry` too, so `kubectl ferry get infsvc/NAME` is the same command.
    prog = "kubectl ferry" if Path(sys.argv[0]).name == "kubectl-ferry" else "ferry"
    args = build_parser(prog).parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
