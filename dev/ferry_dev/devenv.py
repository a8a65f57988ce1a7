"""``ferry-dev up|down|status|env|shell``: the whole local environment in one state directory.

``up`` builds (or reuses) the control-plane and node binaries and Ferry's image, starts the cluster
(KWOK nodes and the real node) inside the environment's network namespace, installs the CRDs,
starts the real services and optionally the operator, and records every process in ``dev.json`` so
``down`` from another shell leaves nothing behind. ``shell`` runs a command in that namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from ferry_dev import netns
from ferry_dev.controlplane import (LocalCluster, binaries_dir, ensure_binaries,
                                    pod_security_namespace)
from ferry_dev.processes import alive, stop_process_group, wait_until


# The environment's network namespace; tests that run a second environment name their own.
DEV_NETNS = os.environ.get("FERRY_DEV_NETNS", "ferry-dev")


def default_state_dir() -> Path:
    return Path(os.environ.get("FERRY_DEV_DIR", Path.home() / ".cache" / "ferry" / "dev"))


def install_crds(cluster: LocalCluster) -> None:
    from ferry.generate.crds import generate_crds

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
    """The demo's namespace, enforcing Pod Security ``restricted`` on every pod Ferry creates."""
    if cluster.kubectl("get", "namespace", namespace, check=False).returncode != 0:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(pod_security_namespace(namespace)))
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


# --- the demo: `ferry-dev up --operator --examples DIR` with the services --------------------

APPROVER_ENV = "FERRY_DEMO_APPROVER"
DEMO_TIMEOUT = 600.0  # per step; the first run of a pod may load its image
# One transaction to ask the served model about (the columns the seeded data and its features have;
# numbers as floats: the example trainer trains on float64 features, and the signature holds them
# to that, as MLflow does).
SAMPLE = {"customer_id": 3.0, "amount": 420.5, "log_amount": 6.0438, "country": "FR",
          "is_large": True}


class DemoError(RuntimeError):
    """A demo step did not reach its goal; the message says which object and why."""


def demo_log(step: str, detail: str) -> None:
    print(f"demo: {step}: {detail}", flush=True)


def documents(directory: Path) -> list[dict]:
    """The Ferry objects of ``directory``'s YAML files (not its subdirectories), in file order."""
    return [doc for path in sorted(directory.glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc]


def demo_approver() -> str:
    """Who approves in the demo: ``$FERRY_DEMO_APPROVER``, else the login name."""
    import getpass

    return os.environ.get(APPROVER_ENV) or getpass.getuser()


def run_examples(cluster: LocalCluster, directory: Path, env: dict[str, str] | None,
                 with_operator: bool) -> None:
    """``--examples``: with the services (``env``) and the operator, the whole demo (`run_demo`);
    otherwise apply the examples and, with an operator, wait until they are reconciled."""
    if env is not None:
        ensure_namespace(cluster, DEMO_NAMESPACE)
        seed_demo_data(cluster, env)
        if with_operator:
            try:
                run_demo(cluster, directory, env)
            except DemoError as error:
                print(f"demo: FAILED: {error}\nThe environment stays up for a look "
                      f"(ferry-dev shell -- kubectl get mlops,events -n {DEMO_NAMESPACE}); "
                      "`ferry-dev down` stops it.", file=sys.stderr, flush=True)
                raise SystemExit(1) from None
            return
    apply_examples(cluster, directory, wait=with_operator)


def status_of(cluster: LocalCluster, kind: str, name: str) -> dict:
    """The status of the Ferry object ``kind/name`` in the demo namespace ({} while absent)."""
    found = cluster.kubectl("get", f"{kind.lower()}s.ferry.dev", name, "-n", DEMO_NAMESPACE,
                            "-o", "json", check=False)
    return (json.loads(found.stdout).get("status") or {}) if found.returncode == 0 else {}


def condition_message(status: dict, type_: str) -> str:
    found = [c for c in status.get("conditions") or [] if c.get("type") == type_]
    return found[0].get("message", "") if found else ""


def wait_for_status(cluster: LocalCluster, kind: str, name: str, done, what: str,
                    timeout: float = DEMO_TIMEOUT) -> dict:
    """Poll ``kind/name``'s status until ``done(status)`` is truthy; ``done`` may raise
    DemoError. A timeout names the object and its last phase and message."""
    last: dict = {}

    def check():
        nonlocal last
        last = status_of(cluster, kind, name)
        return last if done(last) else None

    try:
        return wait_until(check, timeout, what, interval=1.0)
    except TimeoutError as error:
        raise DemoError(f"{error} ({kind} {name}: phase {last.get('phase') or '-'}"
                        f"{', ' + last['message'] if last.get('message') else ''})") from None


def forget_earlier_champion(env: dict[str, str], model: str) -> None:
    """The MLflow registry outlives ``ferry-dev down``: a ``champion`` alias left by an earlier
    demo points at a version that nothing in this new cluster serves. Drop the alias (the versions
    stay) so ``beatChampion`` gives the same verdict on every run, and say so."""
    from ferry.adapters.mlflow import CHAMPION, Registry

    registry = Registry(env["FERRY_MLFLOW_URI"])
    champion = registry.version_by_alias(model, CHAMPION)
    if champion is not None:
        registry.remove_alias(model, CHAMPION)
        demo_log("registry", f"dropped the {CHAMPION} alias of {model} (v{champion.version}, left "
                 "by an earlier demo; nothing in this cluster serves it)")


def compute_features(cluster: LocalCluster, pipeline: dict) -> None:
    """Run a scheduled pipeline now (a Job from its CronJob, named for this demo, so results an
    earlier demo left in S3 are never taken for this one's) and wait for its published output."""
    name = pipeline["metadata"]["name"]
    cronjob = name[:52]
    if pipeline["spec"].get("schedule"):
        wait_until(lambda: cluster.kubectl("get", "cronjob", cronjob, "-n", DEMO_NAMESPACE,
                                           check=False).returncode == 0, 60,
                   f"the CronJob of FeaturePipeline {name}")
        run_id = f"{cronjob[:40]}-demo-{int(time.time())}"
        cluster.kubectl("create", "job", f"--from=cronjob/{cronjob}", run_id, "-n",
                        DEMO_NAMESPACE)
    else:  # run once: the operator's own Job
        run_id = None

    def ours(record: dict) -> bool:
        return bool(record.get("runId")) and (run_id is None or record["runId"] == run_id)

    def published(status: dict):
        last = status.get("lastRun") or {}
        if last.get("state") == "Failed" and ours(last):
            raise DemoError(f"FeaturePipeline {name} run {last['runId']} failed: "
                            f"{condition_message(status, 'Validated') or status.get('message')}")
        return ours(status.get("lastSuccessfulRun") or {})

    status = wait_for_status(cluster, "FeaturePipeline", name, published,
                             f"FeaturePipeline {name} to publish its run")
    good = status["lastSuccessfulRun"]
    demo_log("features computed", f"FeaturePipeline {name} run {good['runId']}: "
             f"{good.get('rows', '?')} rows -> {status.get('latestOutputUri')}")


def wait_trained(cluster: LocalCluster, run: dict) -> None:
    name = run["metadata"]["name"]

    def finished(status: dict):
        if status.get("phase") == "Failed":
            raise DemoError(f"TrainingRun {name} failed: "
                            f"{status.get('message') or condition_message(status, 'Succeeded')} "
                            f"(kubectl logs -n {DEMO_NAMESPACE} -l ferry.dev/trainingrun={name})")
        return status.get("phase") == "Succeeded"

    status = wait_for_status(cluster, "TrainingRun", name, finished,
                             f"TrainingRun {name} to succeed")
    metrics = status.get("metrics") or {}
    shown = ", ".join(f"{key} {metrics[key]:.4g}" for key in ("auc", "accuracy")
                      if key in metrics) or "no metrics"
    demo_log("trained", f"TrainingRun {name} Succeeded ({shown}; MLflow run "
             f"{status.get('mlflowRunId')})")


def gate_summary(gates: list[dict]) -> str:
    parts = []
    for result in gates:
        detail = " ".join(str(result[k]) for k in ("observed", "threshold") if result.get(k))
        if result.get("message"):
            detail = f"{detail}, {result['message']}" if detail else result["message"]
        parts.append(f"{result['name']} {result['verdict']}" + (f" ({detail})" if detail else ""))
    return "; ".join(parts) or "no gates"


def register_gate_approve(cluster: LocalCluster, version: dict, approver: str) -> dict:
    """Registered → gated → approved (``ferry approve`` as ``approver`` when approval is
    required). Returns the ModelVersion's status."""
    name = version["metadata"]["name"]
    status = wait_for_status(cluster, "ModelVersion", name, lambda s: s.get("mlflowVersion"),
                             f"ModelVersion {name} to be registered")
    demo_log("registered", f"ModelVersion {name} = {version['spec']['modelName']} version "
             f"{status['mlflowVersion']} ({status.get('source')})")
    decided = ("AwaitingApproval", "Approved", "Serving", "Rejected")
    status = wait_for_status(cluster, "ModelVersion", name, lambda s: s.get("phase") in decided,
                             f"ModelVersion {name}'s gates")
    if status["phase"] == "Rejected":
        raise DemoError(f"ModelVersion {name} was Rejected: "
                        f"{condition_message(status, 'GatesPassed')}")
    demo_log("gated", f"ModelVersion {name}: {gate_summary(status.get('gates') or [])}")
    if status["phase"] != "AwaitingApproval":
        demo_log("approved", f"ModelVersion {name}: {condition_message(status, 'Approved')}")
        return status
    command = [sys.executable, "-m", "ferry", "approve", f"mv/{name}", "--by", approver,
               "--comment", "approved in the demo (ferry-dev up --examples)",
               "-n", DEMO_NAMESPACE, "--kubeconfig", str(cluster.kubeconfig)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    status = wait_for_status(
        cluster, "ModelVersion", name, lambda s: s.get("phase") in ("Approved", "Serving")
        and (s.get("approval") or {}).get("by") == approver, f"ModelVersion {name} Approved")
    demo_log(f"approved by {approver}",
             f"ferry approve mv/{name} --by {approver} -n {DEMO_NAMESPACE} "
             f"(recorded at {status['approval'].get('at')}, also as MLflow tags)")
    return status


def wait_rolled_out(cluster: LocalCluster, service: dict) -> dict:
    name = service["metadata"]["name"]
    pinned = (service["spec"].get("model") or {}).get("modelVersion")

    def serving(status: dict):
        return status.get("phase") == "Healthy" and status.get("stableVersion") and \
            status.get("stableVersion") == (pinned or status.get("stableVersion"))

    status = wait_for_status(cluster, "InferenceService", name, serving,
                             f"InferenceService {name} to serve its model")
    stable = (status.get("rollout") or {}).get("stable") or {}
    demo_log("rolled out", f"InferenceService {name} serves {status['stableVersion']} "
             f"({stable.get('modelName', '?')} v{stable.get('mlflowVersion', '?')}), "
             f"{status.get('replicas', '?')} replica(s) ready")
    return status


def http_post(url: str, body: bytes, timeout: float = 10) -> str:
    """POST JSON; an HTTP error carries the server's answer, which says what it refused."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read().decode()
    except urllib.error.HTTPError as error:
        answer = error.read().decode(errors="replace")[:800]
        raise DemoError(f"{url}: HTTP {error.code}: {answer}") from None


def predict(cluster: LocalCluster, service: str, columns: list[str]) -> tuple[str, str, dict]:
    """POST one record to the service's ``/invocations`` through its Service (ClusterIP, balanced
    by kube-proxy), as a client in the cluster would; returns (where, answer, record)."""
    record = {c: SAMPLE[c] for c in columns if c in SAMPLE} if columns else dict(SAMPLE)
    body = json.dumps({"dataframe_records": [record]}).encode()
    svc = json.loads(cluster.kubectl("get", "service", service, "-n", DEMO_NAMESPACE, "-o",
                                     "json").stdout)
    url = f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}/invocations"
    try:
        return url, http_post(url, body), record
    except OSError as error:
        raise DemoError(f"InferenceService {service} did not answer at {url}: {error}") from None


def run_demo(cluster: LocalCluster, directory: Path, env: dict[str, str],
             approver: str | None = None) -> None:
    """The examples in dependency order, each step checked and logged on one line: features
    computed, trained, registered, gated, approved by a named user, rolled out, prediction
    answered. What an earlier demo left in MLflow and S3 does not change the outcome: runs,
    registry versions and the feature run are this demo's own, and a stale champion alias is
    dropped first. Raises DemoError at the first step that fails."""
    approver = approver or demo_approver()
    objects = documents(directory)
    of = {kind: [o for o in objects if o["kind"] == kind] for kind in
          ("FeaturePipeline", "TrainingRun", "ModelVersion", "InferenceService")}
    for model in sorted({mv["spec"]["modelName"] for mv in of["ModelVersion"]}):
        forget_earlier_champion(env, model)

    def apply(items: list[dict]) -> None:
        if items:
            cluster.kubectl("apply", "-n", DEMO_NAMESPACE, "-f", "-",
                            input=yaml.safe_dump_all(items, sort_keys=False))

    apply(of["FeaturePipeline"])  # first: a TrainingRun reads the output it publishes
    for pipeline in of["FeaturePipeline"]:
        compute_features(cluster, pipeline)
    apply([o for o in objects if o["kind"] != "FeaturePipeline"])
    for run in of["TrainingRun"]:
        wait_trained(cluster, run)
    signatures = {}
    for version in of["ModelVersion"]:
        status = register_gate_approve(cluster, version, approver)
        signature = next((g for g in status.get("gates") or [] if g["name"] == "signature"), {})
        signatures[version["metadata"]["name"]] = [
            c for c in (signature.get("observed") or "").split(",") if c]
    for service in of["InferenceService"]:
        status = wait_rolled_out(cluster, service)
        where, answer, record = predict(cluster, service["metadata"]["name"],
                                        signatures.get(status["stableVersion"], []))
        demo_log("prediction answered", f"{where} {json.dumps(record)} -> {answer}")


# --- what `down` keeps ------------------------------------------------------------------------

KEPT = (("services/mlflow.db", "MLflow tracking and model registry (runs, versions, aliases)"),
        ("services/seaweedfs", "S3 data (raw and feature data, checkpoints, MLflow artifacts, "
                               "prediction logs)"),
        ("services/prometheus-data", "Prometheus metrics"),
        ("cluster", "the cluster's logs and pod directories"),
        ("operator.log", "the operator's log"))


def after_down(state_dir: Path, wipe: bool = False) -> str:
    """What ``down`` left for the next ``up`` and how to wipe it; with ``wipe``, delete the state
    directory (never the build cache, which only makes the next start faster)."""
    from ferry_dev.controlplane import cache_root

    cache = f"build cache kept: {cache_root() / 'bin'} (delete it to rebuild the binaries)"
    if wipe:
        return "\n".join([wipe_state(state_dir), cache])
    kept = [(name, what) for name, what in KEPT if (state_dir / name).exists()]
    if not kept:
        return f"Nothing kept in {state_dir}; {cache}."
    width = max(len(name) for name, _ in kept)
    return "\n".join([f"Kept in {state_dir} for the next `ferry-dev up`:",
                      *(f"  {name:<{width}}  {what}" for name, what in kept),
                      f"Start from nothing: ferry-dev down --wipe (or rm -rf {state_dir}); {cache}."])


def wipe_state(state_dir: Path) -> str:
    """Delete the state directory of a stopped environment: the MLflow registry, S3 data,
    Prometheus data and logs go with it."""
    import shutil

    from ferry_dev.controlplane import cache_root

    target = state_dir.resolve()
    if not target.exists():
        return f"Nothing to wipe: {state_dir} does not exist."
    if target in (Path("/"), Path.home().resolve(), cache_root().resolve()) or \
            (target / "dev.json").exists():
        raise RuntimeError(f"refusing to wipe {state_dir}: not a stopped dev environment's state")
    failed: list[str] = []
    shutil.rmtree(target, onerror=lambda _fn, path, info: failed.append(f"{path}: {info[1]}"))
    if failed:
        raise RuntimeError(f"could not wipe all of {state_dir} (first: {failed[0]}); "
                           f"remove it by hand: rm -rf {state_dir}")
    return f"Wiped {state_dir}: MLflow registry, S3 data, Prometheus data and logs are gone."


def _load(state_dir: Path) -> dict:
    path = state_dir / "dev.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _save(state_dir: Path, state: dict) -> None:
    (state_dir / "dev.json").write_text(json.dumps(state, indent=2))


def up(state_dir: Path, with_services: bool, with_operator: bool,
       examples: Path | None = None) -> dict:
    started = time.monotonic()
    state_dir.mkdir(parents=True, exist_ok=True)
    if _load(state_dir):
        down(state_dir)  # start clean: a half-dead environment from a killed session
    from ferry_dev.image import ensure_ferry_image

    bin_dir = ensure_binaries()
    image = ensure_ferry_image()
    cluster = LocalCluster(state_dir / "cluster", bin_dir=bin_dir,
                           bind_address="0.0.0.0", advertise_address=netns.NODE_IP,
                           real_node=True,
                           images=demo_images(image.reference, image.path)).start()
    state = {"kubeconfig": str(cluster.kubeconfig), "clusterDir": str(cluster.state_dir),
             "netns": DEV_NETNS,
             "env": {"KUBECONFIG": str(cluster.kubeconfig), "FERRY_IMAGE": image.reference}}
    _save(state_dir, state)
    install_crds(cluster)
    if with_services:
        from ferry_dev.services import DevServices

        services = DevServices(state_dir / "services", host=netns.NODE_IP)
        services.start()
        state["services"] = str(state_dir / "services")
        state["env"] |= services.env()
        _save(state_dir, state)
    if with_operator:
        state["operatorPid"] = start_operator(cluster.kubeconfig, state_dir, state["env"])
        _save(state_dir, state)
    if examples is not None:
        run_examples(cluster, examples, state["env"] if with_services else None, with_operator)
    state["startSeconds"] = round(time.monotonic() - started, 1)
    _save(state_dir, state)
    return state


def down(state_dir: Path) -> None:
    state = _load(state_dir)
    if pid := state.get("operatorPid"):
        stop_process_group(pid)
    if state.get("services"):
        from ferry_dev.services import DevServices

        DevServices.stop_from_state(Path(state["services"]))
    LocalCluster(Path(state.get("clusterDir", state_dir / "cluster"))).stop()
    (state_dir / "dev.json").unlink(missing_ok=True)
    netns.delete(DEV_NETNS)


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


def demo_images(reference: str, archive: Path) -> dict[str, Path]:
    """Ferry's local build under its content reference and under the released name the
    examples and the operator's default ``FERRY_IMAGE`` use, so both run it without a pull."""
    from ferry.config import OperatorConfig

    return {reference: archive, OperatorConfig.model_fields["image"].default: archive}


def shell(state_dir: Path, command: list[str]) -> int:
    """A command (default: a shell) inside the environment's network namespace, with its
    client variables: the cluster, its Service IPs and the services exist only there."""
    state = _load(state_dir)
    if not state or not netns.path(DEV_NETNS).exists():
        print("the dev environment is not running (make demo, or ferry-dev up)", file=sys.stderr)
        return 1
    command = command[1:] if command[:1] == ["--"] else command
    argv = netns.exec_argv(DEV_NETNS, command or [os.environ.get("SHELL", "bash")])
    path = f"{binaries_dir()}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}" \
           f"{os.environ.get('PATH', '')}"
    return subprocess.run(argv, env=os.environ | state.get("env", {}) | {"PATH": path}).returncode


def main(args) -> int:
    state_dir = args.state_dir or default_state_dir()
    if args.action == "shell":
        return shell(state_dir, args.shell_command)
    # Every other action works inside the environment's network namespace (``up`` creates it
    # first, before any thread or process starts, so all it starts lives there).
    if args.action == "up" or netns.path(DEV_NETNS).exists():
        netns.enter(DEV_NETNS)
    if args.action == "up":
        state = up(state_dir, not args.no_services, args.operator,
                   args.examples)
        print(f"Ferry dev environment is up in {state['startSeconds']}s.")
        if args.examples:
            cluster = LocalCluster(Path(state["clusterDir"]))
            print(cluster.kubectl("get", "mlops", "-A").stdout)
        print("The cluster lives in its own network namespace; reach it with")
        print("  ferry-dev shell                       # a shell with KUBECONFIG and the services")
        print("  ferry-dev shell -- kubectl get mlops -A")
        print("  ferry-dev shell -- kubectl get pods -n ferry-demo; "
              "ferry-dev shell -- kubectl logs -n ferry-demo POD")
    elif args.action == "down":
        down(state_dir)
        print("Ferry dev environment stopped.")
        print(after_down(state_dir, wipe=getattr(args, "wipe", False)))
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

