"""``ferry dev up|down|status|env``: the whole local environment in one state directory.

``up`` builds (or reuses) the control-plane binaries, starts the cluster with its KWOK nodes and
the local runner, installs the CRDs, starts the real services and optionally the operator, and
records every process in ``dev.json`` so ``down`` from another shell leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ferry.dev.controlplane import LocalCluster, ensure_binaries
from ferry.dev.processes import alive, stop_process_group, wait_until


def default_state_dir() -> Path:
    return Path(os.environ.get("FERRY_DEV_DIR", Path.home() / ".cache" / "ferry" / "dev"))


def install_crds(cluster: LocalCluster) -> None:
    from ferry.api.crdgen import generate_crds

    documents = yaml.safe_dump_all(list(generate_crds().values()), sort_keys=False)
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=documents)
    cluster.kubectl("wait", "--for=condition=Established", "crd", "-l",
                    "app.kubernetes.io/part-of=ferry", "--timeout=60s")


def start_operator(kubeconfig: Path, state_dir: Path, env: dict[str, str],
                   metrics_port: int = 8080) -> int:
    log = open(state_dir / "operator.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "ferry", "operator", "--kubeconfig", str(kubeconfig),
         "--metrics-port", str(metrics_port)],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env=os.environ | env | {"FERRY_LEASE_NAMESPACE": "default"},
    )
    return process.pid


DEMO_NAMESPACE = "ferry-demo"


def seed_demo_data(cluster: LocalCluster, env: dict[str, str], rows: int = 500) -> None:
    """Raw transactions in S3 and the S3 credentials Secret the example pipeline reads."""
    import io

    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    countries = ["DE", "FR", "NL", "US"]
    amounts = [round((i * 7919) % 1000 / 3.0, 2) for i in range(rows)]
    table = pa.table({
        "customer_id": [i % 97 for i in range(rows)],
        "amount": amounts,
        "country": [countries[i % 4] for i in range(rows)],
        # Learnable, so the example model passes its gates: large amounts outside DE, and a
        # little label noise so it is not trivial.
        "is_fraud": [(amount > 250 and i % 4 != 0) != (i % 37 == 0)
                     for i, amount in enumerate(amounts)],
    })
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    boto3.client("s3", endpoint_url=env["FERRY_S3_ENDPOINT"],
                 aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                 region_name=env["AWS_DEFAULT_REGION"]).put_object(
        Bucket=env["FERRY_S3_BUCKET"], Key="raw/transactions/part-0.parquet",
        Body=buffer.getvalue())
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "ferry-s3", "namespace": DEMO_NAMESPACE},
              "stringData": {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                 "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL_S3",
                                                 "MLFLOW_S3_ENDPOINT_URL")}}
    cluster.kubectl("apply", "-f", "-", input=json.dumps(secret))


def ensure_namespace(cluster: LocalCluster, namespace: str) -> None:
    if cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0:
        cluster.kubectl("create", "namespace", namespace)
    wait_until(lambda: cluster.kubectl("get", "sa", "default", "-n", namespace,
                                       check=False).returncode == 0, 30, "default ServiceAccount")


def apply_examples(cluster: LocalCluster, directory: Path, wait: bool, timeout: float = 60) -> None:
    """Apply the examples into their namespace; with an operator, wait until each is reconciled."""
    namespace = DEMO_NAMESPACE
    ensure_namespace(cluster, namespace)
    cluster.kubectl("apply", "-n", namespace, "-f", str(directory))
    if not wait:
        return

    def all_observed() -> bool:
        items = json.loads(cluster.kubectl("get", "mlops", "-n", namespace, "-o", "json").stdout)
        return bool(items["items"]) and all(
            item.get("status", {}).get("observedGeneration") == item["metadata"]["generation"]
            for item in items["items"])

    wait_until(all_observed, timeout, "the operator to reconcile the examples")


def _load(state_dir: Path) -> dict:
    path = state_dir / "dev.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(state_dir: Path, state: dict) -> None:
    (state_dir / "dev.json").write_text(json.dumps(state, indent=2))


def up(state_dir: Path, runner_gpus: int, with_services: bool, with_operator: bool,
       examples: Path | None = None) -> dict:
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    if _load(state_dir):
        down(state_dir)  # start clean: a half-dead environment from a killed session
    bin_dir = ensure_binaries()
    cluster = LocalCluster(state_dir / "cluster", runner_gpus=runner_gpus, bin_dir=bin_dir).start()
    state = {"kubeconfig": str(cluster.kubeconfig), "clusterDir": str(cluster.state_dir),
             "runnerGpus": runner_gpus, "env": {"KUBECONFIG": str(cluster.kubeconfig)}}
    _save(state_dir, state)
    install_crds(cluster)
    if with_services:
        from ferry.dev.services import DevServices

        services = DevServices(state_dir / "services")
        services.start()
        state["services"] = str(state_dir / "services")
        state["env"] |= services.env()
        _save(state_dir, state)
    if with_operator:
        state["operatorPid"] = start_operator(cluster.kubeconfig, state_dir, state["env"])
        _save(state_dir, state)
    if examples is not None:
        if with_services:
            ensure_namespace(cluster, DEMO_NAMESPACE)
            seed_demo_data(cluster, state["env"])
        apply_examples(cluster, examples, wait=with_operator)
    state["startSeconds"] = round(time.monotonic() - started, 1)
    _save(state_dir, state)
    return state


def down(state_dir: Path) -> None:
    state = _load(state_dir)
    if pid := state.get("operatorPid"):
        stop_process_group(pid)
    if state.get("services"):
        from ferry.dev.services import DevServices

        DevServices.stop_from_state(Path(state["services"]))
    LocalCluster(Path(state.get("clusterDir", state_dir / "cluster"))).stop()
    (state_dir / "dev.json").unlink(missing_ok=True)


def status(state_dir: Path) -> dict:
    state = _load(state_dir)
    if not state:
        return {"running": False}
    cluster = LocalCluster(Path(state["clusterDir"]))
    report = {"running": cluster.is_running(), "kubeconfig": state["kubeconfig"]}
    if pid := state.get("operatorPid"):
        report["operator"] = "running" if alive(pid) else "exited"
    if cluster.is_running():
        report["nodes"] = cluster.kubectl("get", "nodes", "-o", "wide").stdout
    return report


def main(args) -> int:
    state_dir = args.state_dir or default_state_dir()
    if args.action == "up":
        state = up(state_dir, args.runner_gpus, not args.no_services, args.operator,
                   args.examples)
        print(f"Ferry dev environment is up in {state['startSeconds']}s.")
        if args.examples:
            cluster = LocalCluster(Path(state["clusterDir"]))
            print(cluster.kubectl("get", "mlops", "-A").stdout)
            print("Run the scheduled feature pipeline now:\n  kubectl create job -n ferry-demo "
                  "--from=cronjob/transactions-v2 transactions-v2-manual")
        print(f"  export KUBECONFIG={state['kubeconfig']}")
        print("  kubectl get nodes; kubectl get mlops -A")
        print(f"  eval \"$(ferry dev env --state-dir {state_dir})\"  # all client variables")
    elif args.action == "down":
        down(state_dir)
        print("Ferry dev environment stopped.")
    elif args.action == "status":
        report = status(state_dir)
        print(json.dumps({k: v for k, v in report.items() if k != "nodes"}, indent=2))
        if "nodes" in report:
            print(report["nodes"])
        return 0 if report["running"] else 1
    elif args.action == "env":
        for key, value in _load(state_dir).get("env", {}).items():
            print(f"export {key}={value}")
    return 0

