"""The local pod runner: a minimal kubelet that runs a node's pods as local processes.

``python -m ferry.dev.runner --kubeconfig K --node-name N --state-dir D [--gpus G]``

It registers Node N (label ``ferry.dev/local-runner=true``, no taints), renews its Lease, and runs
every pod bound to N: init containers in order, then the containers, each as a process started by
``ferry.dev.podexec`` in a private mount namespace with the pod's volumes bind-mounted at their
``mountPath``. What differs from a real kubelet, on purpose:

- **images are ignored**: ``command`` + ``args`` run on the host, so the command must exist here;
- each pod gets a unique loopback IP (127.x.y.z) but no network namespace: servers must bind to
  their pod IP (declare ``POD_IP`` from the Downward API ``status.podIP``);
- cluster DNS is served by the runner itself (``ferry.dev.clusterdns``, on port 53 of 127.0.0.10 or
  the next free 127.0.0.x) instead of CoreDNS: a Service name resolves to the IPs of the ready pods
  it selects, as a headless Service's would (there is no ClusterIP routing, so clients reach a pod
  directly at the Service's port, which must equal the targetPort), ``<hostname>.<subdomain>`` to
  that pod; other names go to the host's nameservers. Each pod's ``/etc/resolv.conf`` is its own
  file bind-mounted by the kubelet's ``dnsPolicy`` rules (ClusterFirst: the cluster nameserver,
  ``search <ns>.svc.cluster.local svc.cluster.local cluster.local``, ``ndots:5``; hostNetwork and
  ``Default`` pods keep the host's). Without root no port 53: pods keep the host's resolv.conf;
- probes: httpGet, tcpSocket and exec readiness/liveness probes; startup probes are not run;
- ``kubectl logs``/``exec`` are not served; output goes to ``<state>/pods/<ns>_<pod>_<uid>/<c>.log``;
- when the runner restarts, a pod whose processes it had started is treated like a pod on a
  rebooted node: restartPolicy Never → Failed (reason ``NodeRestart``), otherwise restarted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, UTC
from pathlib import Path

from kubernetes import client, config as kube_config, watch
from kubernetes.client.rest import ApiException

from ferry.dev.clusterdns import ClusterDNS, pod_resolv_conf
from ferry.dev.podspec import (
    FileSpec, Lookups, Mount, PodSpecError, command_line, decode_secret, downward_files,
    encode, log_path, mounts_for, pod_dir, pod_ip_for, pod_phase, resolve_env, restart_backoff,
    should_restart, terminated_reason, select_items)

log = logging.getLogger("ferry.runner")
HOST_IP = "127.0.0.1"
HOST_RESOLV_CONF = Path("/etc/resolv.conf")
RUNNER_LABEL = "ferry.dev/local-runner"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Node:
    """Registration and heartbeats of the runner's Node object."""

    def __init__(self, core: client.CoreV1Api, coordination: client.CoordinationV1Api, name: str,
                 capacity: dict[str, str]) -> None:
        self.core, self.coordination, self.name, self.capacity = core, coordination, name, capacity

    def manifest(self) -> dict:
        return {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.name, "labels": {
                RUNNER_LABEL: "true", "kubernetes.io/hostname": self.name,
                "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
            "spec": {},
        }

    def status(self) -> dict:
        stamp = now()
        conditions = [
            {"type": t, "status": "False", "reason": f"KubeletHas{r}", "lastHeartbeatTime": stamp,
             "lastTransitionTime": stamp, "message": "local runner"}
            for t, r in (("MemoryPressure", "SufficientMemory"), ("DiskPressure", "NoDiskPressure"),
                         ("PIDPressure", "SufficientPID"))]
        conditions.append({"type": "Ready", "status": "True", "reason": "KubeletReady",
                           "message": "ferry local runner is ready", "lastHeartbeatTime": stamp,
                           "lastTransitionTime": stamp})
        return {
            "capacity": self.capacity, "allocatable": self.capacity, "conditions": conditions,
            "addresses": [{"type": "InternalIP", "address": HOST_IP},
                          {"type": "Hostname", "address": self.name}],
            "nodeInfo": {"kubeletVersion": "ferry-local-runner", "operatingSystem": "linux",
                         "architecture": "amd64", "containerRuntimeVersion": "ferry-local://1",
                         "kernelVersion": os.uname().release, "osImage": "host",
                         "kubeProxyVersion": "", "machineID": "", "systemUUID": "",
                         "bootID": ""},
        }

    def register(self) -> None:
        try:
            self.core.create_node(self.manifest())
        except ApiException as error:
            if error.status != 409:
                raise
            self.core.patch_node(self.name, {"metadata": self.manifest()["metadata"]})
        self.core.patch_node_status(self.name, {"status": self.status()})

    def renew(self) -> None:
        body = {"metadata": {"name": self.name, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": self.name, "leaseDurationSeconds": 40,
                         "renewTime": micro_now()}}
        try:
            self.coordination.patch_namespaced_lease(self.name, "kube-node-lease", body)
        except ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease("kube-node-lease", body)

    def heartbeat(self, stop: threading.Event) -> None:
        beats = 0
        while not stop.wait(0 if beats == 0 else 10):
            try:
                self.renew()
                if beats % 3 == 0:
                    self.core.patch_node_status(self.name, {"status": self.status()})
            except Exception as error:  # the apiserver may be restarting; keep trying
                log.warning("node heartbeat failed: %s", error)
            beats += 1


class ContainerProcess:
    """One container: its process, restarts, probes and reported state."""

    def __init__(self, pod: PodWorker, spec: dict, init: bool) -> None:
        self.pod, self.spec, self.init = pod, spec, init
        self.name = spec["name"]
        self.process: subprocess.Popen | None = None
        self.restarts = 0
        self.state: dict = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: dict = {}
        self.ready = False
        self.started_at: float = 0.0

    def start(self, argv: list[str], env: dict[str, str], mounts: list) -> None:
        spec_file = self.pod.dir / f"{self.name}.exec.json"
        spec_file.write_text(json.dumps({
            "argv": argv, "env": env, "workingDir": self.spec.get("workingDir"),
            "mounts": [{"source": m.source, "target": m.target, "readOnly": m.read_only}
                       for m in mounts]}))
        output = open(log_path(self.pod.runner.state_dir, *self.pod.key, self.name), "ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ferry.dev.podexec", str(spec_file)],
            stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        output.close()
        self.started_at = time.monotonic()
        self.state = {"running": {"startedAt": now()}}
        self.ready = not self.spec.get("readinessProbe")

    def finished(self) -> int | None:
        if self.process is None:
            return None
        code = self.process.poll()
        if code is None:
            return None
        code = 128 - code if code < 0 else code  # killed by signal N -> 128+N, as kubelet reports
        if "running" in self.state:
            self.state = {"terminated": {
                "exitCode": code, "reason": terminated_reason(code),
                "startedAt": self.state["running"]["startedAt"], "finishedAt": now(),
                "containerID": f"ferry-local://{self.process.pid}"}}
            self.ready = False
        return code

    def kill(self, grace: float) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.process.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def status(self) -> dict:
        pid = self.process.pid if self.process else None
        status = {
            "name": self.name, "image": self.spec.get("image", ""),
            "imageID": "", "ready": self.ready, "restartCount": self.restarts,
            "started": "running" in self.state, "state": self.state,
        }
        if pid:
            status["containerID"] = f"ferry-local://{pid}"
        if self.last_state:
            status["lastState"] = self.last_state
        return status


class PodWorker(threading.Thread):
    """Runs one pod to completion (or until it is deleted), reporting its status."""

    def __init__(self, runner: Runner, pod: dict) -> None:
        super().__init__(name=f"pod-{pod['metadata']['name']}", daemon=True)
        self.runner, self.pod = runner, pod
        meta = pod["metadata"]
        self.key = (meta["namespace"], meta["name"], meta["uid"])
        self.dir = pod_dir(runner.state_dir, *self.key)
        self.ip = runner.allocate_ip(meta["uid"])
        self.deleting = threading.Event()
        self.policy = pod["spec"].get("restartPolicy", "Always")
        self.inits = [ContainerProcess(self, c, True) for c in pod["spec"].get("initContainers") or []]
        self.containers = [ContainerProcess(self, c, False) for c in pod["spec"]["containers"]]
        self.started = now()
        self.last_status: dict | None = None
        self.failure: tuple[str, str] | None = None
        self.dns_mounts: list[Mount] = []

    # -- preparation

    def lookups(self) -> Lookups:
        """Fetch every ConfigMap and Secret the pod refers to (missing ones are simply absent)."""
        namespace = self.key[0]
        names: dict[str, set[str]] = {"configMap": set(), "secret": set()}
        for container in self.pod["spec"]["containers"] + (self.pod["spec"].get("initContainers") or []):
            for var in container.get("env") or []:
                source = var.get("valueFrom") or {}
                if "configMapKeyRef" in source:
                    names["configMap"].add(source["configMapKeyRef"]["name"])
                if "secretKeyRef" in source:
                    names["secret"].add(source["secretKeyRef"]["name"])
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    names["configMap"].add(source["configMapRef"]["name"])
                if "secretRef" in source:
                    names["secret"].add(source["secretRef"]["name"])
        for volume in self.pod["spec"].get("volumes") or []:
            if "configMap" in volume:
                names["configMap"].add(volume["configMap"]["name"])
            if "secret" in volume:
                names["secret"].add(volume["secret"]["secretName"])
            for source in (volume.get("projected") or {}).get("sources") or []:
                if "configMap" in source:
                    names["configMap"].add(source["configMap"]["name"])
                if "secret" in source:
                    names["secret"].add(source["secret"]["name"])
        lookups = Lookups()
        core = self.runner.core
        for name in names["configMap"]:
            try:
                lookups.config_maps[name] = core.read_namespaced_config_map(name, namespace).data or {}
            except ApiException as error:
                if error.status != 404:
                    raise
        for name in names["secret"]:
            try:
                secret = core.read_namespaced_secret(name, namespace)
                lookups.secrets[name] = decode_secret(secret.data)
            except ApiException as error:
                if error.status != 404:
                    raise
        return lookups

    def prepare_volumes(self, lookups: Lookups) -> dict[str, Path]:
        volumes_dir = self.dir / "volumes"
        result: dict[str, Path] = {}
        for volume in self.pod["spec"].get("volumes") or []:
            name = volume["name"]
            target = volumes_dir / name
            if "hostPath" in volume:
                result[name] = Path(volume["hostPath"]["path"])
                continue
            target.mkdir(parents=True, exist_ok=True)
            files: list[FileSpec] = []
            if "configMap" in volume or "secret" in volume:
                files = self.object_files(volume, lookups)
            elif "downwardAPI" in volume:
                source = volume["downwardAPI"]
                files = downward_files(self.pod, source.get("items") or [], self.ip, HOST_IP,
                                       source.get("defaultMode", 0o644))
            elif "projected" in volume:
                files = self.projected_files(volume["projected"], lookups)
            elif "emptyDir" not in volume:
                raise PodSpecError("ContainerCreating",
                                   f"volume {name!r}: unsupported volume type on the local runner")
            for file in files:
                path = target / file.path
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(file.content)
                path.chmod(file.mode)
            result[name] = target
        return result

    @staticmethod
    def object_files(volume: dict, lookups: Lookups) -> list[FileSpec]:
        """Files of a configMap or secret volume; a missing object blocks the pod unless optional."""
        kind = "configMap" if "configMap" in volume else "secret"
        source = volume[kind]
        name = source["name"] if kind == "configMap" else source["secretName"]
        data = (lookups.config_maps if kind == "configMap" else lookups.secrets).get(name)
        if data is None and not source.get("optional"):
            raise PodSpecError("ContainerCreating", f"{kind.lower()} {name!r} not found")
        return select_items(encode(data or {}), source.get("items"), source.get("defaultMode", 0o644))

    def projected_files(self, projected: dict, lookups: Lookups) -> list[FileSpec]:
        mode = projected.get("defaultMode", 0o644)
        files: list[FileSpec] = []
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                token = self.runner.token(self.pod, source["serviceAccountToken"])
                files.append(FileSpec(source["serviceAccountToken"]["path"], token.encode(), mode))
            elif "configMap" in source:
                data = lookups.config_maps.get(source["configMap"]["name"], {})
                files += select_items(encode(data), source["configMap"].get("items"), mode)
            elif "secret" in source:
                data = lookups.secrets.get(source["secret"]["name"], {})
                files += select_items(encode(data), source["secret"].get("items"), mode)
            elif "downwardAPI" in source:
                files += downward_files(self.pod, source["downwardAPI"].get("items") or [],
                                        self.ip, HOST_IP, mode)
        return files

    def prepare_dns(self) -> list[Mount]:
        """The pod's own /etc/resolv.conf by its dnsPolicy; none when it keeps the host's."""
        text = pod_resolv_conf(self.pod, self.runner.cluster_dns, self.runner.host_resolv_conf)
        if text is None:
            return []
        path = self.dir / "resolv.conf"
        path.write_text(text)
        return [Mount(str(path), str(HOST_RESOLV_CONF), False)]

    # -- running

    def launch(self, container: ContainerProcess, lookups: Lookups, volumes: dict[str, Path]):
        env = resolve_env(self.pod, container.spec, lookups, self.ip, HOST_IP,
                          self.runner.service_env, self.runner.capacity)
        # The runner's own Python environment stands in for the images: `ferry` is on PATH.
        env.setdefault("PATH", f"{Path(sys.executable).parent}{os.pathsep}"
                               f"{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}")
        env.setdefault("HOSTNAME", self.pod["metadata"]["name"])
        container.start(command_line(container.spec, env), env,
                        self.dns_mounts + mounts_for(container.spec, volumes))

    def run(self) -> None:
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if self.recovering():
                return
            self.publish()
            lookups = self.lookups()
            volumes = self.prepare_volumes(lookups)
            self.dns_mounts = self.prepare_dns()
            if not self.run_init_containers(lookups, volumes):
                return
            for container in self.containers:
                self.launch(container, lookups, volumes)
            self.publish()
            self.supervise(lookups, volumes)
        except PodSpecError as error:
            log.warning("pod %s/%s cannot run: %s", self.key[0], self.key[1], error)
            self.failure = (error.reason, str(error))
            for container in self.containers:
                container.state = {"waiting": {"reason": error.reason, "message": str(error)}}
            self.publish()
            self.deleting.wait()
        except ApiException as error:
            log.warning("pod %s/%s: API error %s %s", self.key[0], self.key[1], error.status,
                        error.reason)
        except Exception:
            log.exception("pod %s/%s: runner error", self.key[0], self.key[1])
        finally:
            if self.deleting.is_set():
                self.terminate()

    def recovering(self) -> bool:
        """A Never-restart pod whose processes died with a previous runner fails like on a reboot."""
        statuses = self.pod.get("status", {}).get("containerStatuses") or []
        was_running = any("running" in (s.get("state") or {}) for s in statuses)
        if was_running and self.policy == "Never":
            for container in self.containers:
                container.state = {"terminated": {"exitCode": 137, "reason": "NodeRestart",
                                                  "finishedAt": now()}}
            self.publish()
            return True
        return False

    def run_init_containers(self, lookups: Lookups, volumes: dict[str, Path]) -> bool:
        for container in self.inits:
            while True:
                self.launch(container, lookups, volumes)
                self.publish()
                while (code := container.finished()) is None:
                    if self.deleting.wait(0.2):
                        return False
                if code == 0:
                    break
                if self.policy == "Never":
                    self.publish()
                    return False
                container.restarts += 1
                if self.deleting.wait(restart_backoff(container.restarts)):
                    return False
        return True

    def supervise(self, lookups: Lookups, volumes: dict[str, Path]) -> None:
        probes = [threading.Thread(target=self.probe_loop, args=(c,), daemon=True)
                  for c in self.containers]
        for thread in probes:
            thread.start()
        restart_at: dict[str, float] = {}
        while not self.deleting.wait(0.2):
            for container in self.containers:
                code = container.finished()
                if code is None:
                    continue
                if not should_restart(self.policy, code):
                    continue
                due = restart_at.setdefault(
                    container.name, time.monotonic() + restart_backoff(container.restarts + 1))
                container.state = {"waiting": {"reason": "CrashLoopBackOff",
                                               "message": f"back-off restarting {container.name}"}}
                if time.monotonic() >= due:
                    container.last_state = {"terminated": {"exitCode": code,
                                                           "reason": terminated_reason(code)}}
                    container.restarts += 1
                    restart_at.pop(container.name)
                    self.launch(container, lookups, volumes)
            self.publish()
            if pod_phase(self.policy, [c.state for c in self.containers]) in ("Succeeded", "Failed"):
                return

    def probe_loop(self, container: ContainerProcess) -> None:
        readiness = container.spec.get("readinessProbe")
        liveness = container.spec.get("livenessProbe")
        if not readiness and not liveness:
            return
        successes = failures = live_failures = 0
        while not self.deleting.is_set():
            if "running" not in container.state:
                successes = failures = live_failures = 0
                self.deleting.wait(0.5)
                continue
            started = time.monotonic() - container.started_at
            if readiness and started >= readiness.get("initialDelaySeconds", 0):
                if self.probe(container, readiness):
                    successes, failures = successes + 1, 0
                    if successes >= readiness.get("successThreshold", 1):
                        container.ready = True
                else:
                    successes, failures = 0, failures + 1
                    if failures >= readiness.get("failureThreshold", 3):
                        container.ready = False
            if liveness and started >= liveness.get("initialDelaySeconds", 0):
                live_failures = 0 if self.probe(container, liveness) else live_failures + 1
                if live_failures >= liveness.get("failureThreshold", 3):
                    log.info("liveness probe failed: restarting %s", container.name)
                    container.kill(self.grace())
                    live_failures = 0
            period = min(p.get("periodSeconds", 10) for p in (readiness, liveness) if p)
            self.deleting.wait(period)

    def probe(self, container: ContainerProcess, probe: dict) -> bool:
        timeout = probe.get("timeoutSeconds", 1)
        try:
            if "httpGet" in probe:
                get = probe["httpGet"]
                port = self.port(container, get["port"])
                host = get.get("host") or self.ip
                url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{port}{get.get('path', '/')}"
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    return 200 <= response.status < 400
            if "tcpSocket" in probe:
                port = self.port(container, probe["tcpSocket"]["port"])
                with socket.create_connection((self.ip, port), timeout=timeout):
                    return True
            if "exec" in probe and container.process:
                result = subprocess.run(
                    ["nsenter", f"--mount=/proc/{container.process.pid}/ns/mnt", "--",
                     *probe["exec"]["command"]], capture_output=True, timeout=timeout + 5)
                return result.returncode == 0
        except Exception:
            return False
        return False

    @staticmethod
    def port(container: ContainerProcess, port) -> int:
        if isinstance(port, int) or str(port).isdigit():
            return int(port)
        for declared in container.spec.get("ports") or []:
            if declared.get("name") == port:
                return int(declared["containerPort"])
        raise ValueError(f"unknown port name {port!r}")

    def grace(self) -> float:
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def terminate(self) -> None:
        for container in self.inits + self.containers:
            container.kill(self.grace())
        self.publish_final()
        namespace, name, uid = self.key
        try:
            self.runner.core.delete_namespaced_pod(
                name, namespace, grace_period_seconds=0,
                body=client.V1DeleteOptions(grace_period_seconds=0,
                                            preconditions=client.V1Preconditions(uid=uid)))
        except ApiException as error:
            if error.status not in (404, 409):
                log.warning("deleting pod %s/%s: %s", namespace, name, error)
        self.runner.release(uid)
        for spec_file in self.dir.glob("*.exec.json"):
            spec_file.unlink(missing_ok=True)
        shutil.rmtree(self.dir / "volumes", ignore_errors=True)

    # -- status

    def build_status(self) -> dict:
        states = [c.state for c in self.containers]
        phase = pod_phase(self.policy, states)
        if any("terminated" in c.state and c.state["terminated"]["exitCode"] != 0
               for c in self.inits) and self.policy == "Never":
            phase = "Failed"
        initialized = all("terminated" in c.state and c.state["terminated"]["exitCode"] == 0
                          for c in self.inits)
        ready = phase == "Running" and all(c.ready for c in self.containers)
        stamp = now()

        def condition(type_: str, value: bool, reason: str | None = None) -> dict:
            item = {"type": type_, "status": "True" if value else "False",
                    "lastProbeTime": None, "lastTransitionTime": stamp}
            if reason and not value:
                item["reason"] = reason
            return item

        terminal = phase in ("Succeeded", "Failed")
        conditions = [
            condition("Initialized", initialized, "ContainersNotInitialized"),
            condition("ContainersReady", ready, "PodCompleted" if terminal else "ContainersNotReady"),
            condition("Ready", ready, "PodCompleted" if terminal else "ContainersNotReady"),
        ]
        status = {
            "phase": phase, "hostIP": HOST_IP, "hostIPs": [{"ip": HOST_IP}],
            "podIP": self.ip, "podIPs": [{"ip": self.ip}], "startTime": self.started,
            "conditions": conditions,
            "containerStatuses": [c.status() for c in self.containers],
        }
        if self.inits:
            status["initContainerStatuses"] = [c.status() for c in self.inits]
        if self.failure:
            status["reason"], status["message"] = self.failure
        return status

    def publish_final(self) -> None:
        """As the kubelet does, a deleted pod reports a terminal phase before it goes: a Job with a
        podFailurePolicy judges (and replaces) only pods that reached one, so an evicted pod that
        stayed "Running" would hold its Job forever."""
        for container in self.inits + self.containers:
            container.finished()
        status = self.build_status()
        if status["phase"] not in ("Succeeded", "Failed"):
            status["phase"] = "Failed"
        namespace, name, _ = self.key
        try:
            self.runner.core.patch_namespaced_pod_status(name, namespace, {"status": status})
        except ApiException as error:
            if error.status != 404:
                log.warning("final status of pod %s/%s: %s", namespace, name, error)

    def publish(self) -> None:
        status = self.build_status()
        comparable = json.dumps({k: v for k, v in status.items() if k != "conditions"},
                                sort_keys=True) + json.dumps(
            [(c["type"], c["status"]) for c in status["conditions"]])
        if comparable == self.last_status:
            return
        namespace, name, _ = self.key
        try:
            self.runner.core.patch_namespaced_pod_status(name, namespace, {"status": status})
            self.last_status = comparable
        except ApiException as error:
            if error.status != 404:
                log.warning("status of pod %s/%s: %s", namespace, name, error)


class Runner:
    def __init__(self, api_client: client.ApiClient, node_name: str, state_dir: Path,
                 capacity: dict[str, str], cluster_dns: str | None = None,
                 host_resolv_conf: str = "") -> None:
        self.core = client.CoreV1Api(api_client)
        self.cluster_dns, self.host_resolv_conf = cluster_dns, host_resolv_conf
        self.node = Node(self.core, client.CoordinationV1Api(api_client), node_name, capacity)
        self.node_name, self.state_dir, self.capacity = node_name, state_dir, capacity
        host = api_client.configuration.host.split("://", 1)[-1]
        api_host, _, api_port = host.rpartition(":")
        self.service_env = {
            "KUBERNETES_SERVICE_HOST": api_host, "KUBERNETES_SERVICE_PORT": api_port,
            "KUBERNETES_SERVICE_PORT_HTTPS": api_port,
            "KUBERNETES_PORT": f"tcp://{api_host}:{api_port}",
        }
        self.workers: dict[str, PodWorker] = {}
        self.ips: dict[str, str] = {}
        self.terminated: set[str] = set()  # uids already cleaned up: late events are ignored
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def allocate_ip(self, uid: str) -> str:
        with self.lock:
            if uid not in self.ips:
                self.ips[uid] = pod_ip_for(uid, set(self.ips.values()))
            return self.ips[uid]

    def release(self, uid: str) -> None:
        with self.lock:
            self.ips.pop(uid, None)
            self.workers.pop(uid, None)
            self.terminated.add(uid)

    def token(self, pod: dict, source: dict) -> str:
        """A service-account token bound to the pod, from the TokenRequest API (as kubelet does)."""
        meta = pod["metadata"]
        spec = {
            "expirationSeconds": source.get("expirationSeconds", 3607),
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"],
                               "uid": meta["uid"]},
        }
        if source.get("audience"):
            spec["audiences"] = [source["audience"]]
        request = {"spec": spec}
        response = self.core.create_namespaced_service_account_token(
            pod["spec"].get("serviceAccountName") or "default", meta["namespace"], request)
        return response.status.token

    def handle(self, event_type: str, pod: dict) -> None:
        uid = pod["metadata"]["uid"]
        with self.lock:
            worker = self.workers.get(uid)
        if event_type == "DELETED":
            if worker:
                worker.deleting.set()
            return
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        if worker is None:
            with self.lock:
                if uid in self.terminated:
                    return
            worker = PodWorker(self, pod)
            with self.lock:
                self.workers[uid] = worker
            if not deleting and pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                worker.start()
        worker.pod = pod
        if deleting and not worker.deleting.is_set():
            worker.deleting.set()
            if not worker.is_alive():  # finished pods still need the final delete
                threading.Thread(target=worker.terminate, daemon=True).start()

    def watch_pods(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        while not self.stop.is_set():
            try:
                pods = self.core.list_pod_for_all_namespaces(field_selector=selector)
                for pod in pods.items:
                    self.handle("ADDED", self.core.api_client.sanitize_for_serialization(pod))
                stream = watch.Watch()
                for event in stream.stream(self.core.list_pod_for_all_namespaces,
                                           field_selector=selector,
                                           resource_version=pods.metadata.resource_version,
                                           timeout_seconds=60):
                    if self.stop.is_set():
                        stream.stop()
                        break
                    self.handle(event["type"], event["raw_object"])
            except Exception as error:  # 410 Gone, apiserver restarts: list again
                if not self.stop.is_set():
                    log.warning("pod watch restarting: %s", error)
                    self.stop.wait(1)

    def shutdown(self) -> None:
        self.stop.set()
        with self.lock:
            workers = list(self.workers.values())
        for worker in workers:
            for container in worker.inits + worker.containers:
                container.kill(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ferry-runner", description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--node-name", default="ferry-local-runner")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--gpus", type=int, default=0)
    parser.add_argument("--cpu", default=str(os.cpu_count() or 2))
    parser.add_argument("--memory", default="16Gi")
    parser.add_argument("--pods", default="110")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    capacity = {"cpu": args.cpu, "memory": args.memory, "pods": args.pods,
                "ephemeral-storage": "100Gi"}
    if args.gpus:
        capacity["nvidia.com/gpu"] = str(args.gpus)
    api_client = kube_config.new_client_from_config(config_file=args.kubeconfig)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    host_resolv_conf = HOST_RESOLV_CONF.read_text() if HOST_RESOLV_CONF.exists() else ""
    dns = ClusterDNS(client.CoreV1Api(api_client), host_resolv_conf)
    runner = Runner(api_client, args.node_name, args.state_dir, capacity, dns.serve(),
                    host_resolv_conf)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: runner.stop.set())
    runner.node.register()
    threading.Thread(target=runner.node.heartbeat, args=(runner.stop,), daemon=True).start()
    threading.Thread(target=runner.watch_pods, daemon=True).start()
    log.info("local runner %s is up (gpus=%s)", args.node_name, args.gpus)
    runner.stop.wait()
    runner.shutdown()
    dns.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
