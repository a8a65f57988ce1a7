"""Client traffic for serving tests: requests spread over a Service's ready endpoints.

There is no kube-proxy on the local control plane, and the apiserver refuses EndpointSlices with the
local runner's loopback pod IPs, so the client resolves a Service the way the EndpointSlice
controller does: the pods its selector matches that are Ready, at the port its ``targetPort``
names (refreshed every half second); each request goes to a random one, as kube-proxy does. Every answer is
recorded with its time, status code and prediction.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field

import requests
from kubernetes import client


@dataclass
class Answer:
    at: float
    code: int
    prediction: float | None
    address: str


def ready_addresses(api_client, namespace: str, service: str) -> list[str]:
    core = client.CoreV1Api(api_client)
    spec = core.read_namespaced_service(service, namespace).spec
    selector = ",".join(f"{k}={v}" for k, v in sorted((spec.selector or {}).items()))
    target = spec.ports[0].target_port
    found = []
    for pod in core.list_namespaced_pod(namespace, label_selector=selector).items:
        ready = any(c.type == "Ready" and c.status == "True"
                    for c in pod.status.conditions or [])
        if not ready or not pod.status.pod_ip or pod.metadata.deletion_timestamp:
            continue
        port = target if isinstance(target, int) else next(
            p.container_port for c in pod.spec.containers for p in c.ports or []
            if p.name == target)
        found.append(f"{pod.status.pod_ip}:{port}")
    return sorted(found)


def predict(address: str, x0: float, timeout: float = 5.0) -> tuple[int, float | None]:
    body = {"dataframe_split": {"columns": ["x0", "x1"], "data": [[x0, 0.5]]}}
    response = requests.post(f"http://{address}/invocations", json=body, timeout=timeout)
    if response.status_code != 200:
        return response.status_code, None
    return 200, round(float(response.json()["predictions"][0]), 6)


@dataclass
class Traffic:
    """A background client of one Service; ``inputs`` cycle (e.g. 1.0, -1.0)."""

    api_client: object
    namespace: str
    service: str
    inputs: tuple[float, ...] = (1.0, -1.0)
    pause: float = 0.05
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        addresses: list[str] = []
        refreshed = 0.0
        cycle = itertools.cycle(self.inputs)
        while not self._stop.is_set():
            if time.monotonic() - refreshed > 0.5:
                try:
                    addresses = ready_addresses(self.api_client, self.namespace, self.service)
                except Exception:  # noqa: BLE001 - the apiserver may be busy; keep the last list
                    pass
                refreshed = time.monotonic()
            if addresses:
                address = random.choice(addresses)
                try:
                    code, value = predict(address, next(cycle))
                except requests.RequestException:
                    code, value = 0, None
                    refreshed = 0.0  # the pod went away: read the endpoints again at once
                self.answers.append(Answer(time.monotonic(), code, value, address))
            self._stop.wait(self.pause)

    def since(self, moment: float) -> list[Answer]:
        return [a for a in self.answers if a.at >= moment]

    def longest_gap_without_success(self, start: float, end: float) -> float:
        """Seconds between consecutive successful answers (or the window's edges)."""
        times = [start] + [a.at for a in self.answers if start <= a.at <= end and a.code == 200]
        times.append(end)
        return max(b - a for a, b in itertools.pairwise(times))


def scrape_targets(pods: list) -> list[dict]:
    """file_sd groups for Running pods annotated ``prometheus.io/scrape: "true"``, labelled with
    ``namespace`` and ``pod`` (what kube-prometheus' pod discovery does on a real cluster)."""
    groups = []
    for pod in pods:
        annotations = pod.metadata.annotations or {}
        if annotations.get("prometheus.io/scrape") != "true" or pod.status.phase != "Running" \
                or not pod.status.pod_ip or not annotations.get("prometheus.io/port"):
            continue
        groups.append({"targets": [f"{pod.status.pod_ip}:{annotations['prometheus.io/port']}"],
                       "labels": {"namespace": pod.metadata.namespace, "pod": pod.metadata.name,
                                  "__metrics_path__": annotations.get("prometheus.io/path",
                                                                      "/metrics")}})
    return groups


class PodDiscovery:
    """Keeps Prometheus' pod file_sd in step with the cluster's annotated pods (twice a second)."""

    def __init__(self, api_client, file_sd) -> None:
        self.api = client.CoreV1Api(api_client)
        self.file_sd = file_sd
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PodDiscovery:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        import json

        written = None
        while not self._stop.is_set():
            try:
                groups = scrape_targets(self.api.list_pod_for_all_namespaces().items)
                text = json.dumps(groups, sort_keys=True)
                if text != written:
                    self.file_sd.write_text(text)
                    written = text
            except Exception:  # noqa: BLE001 - the apiserver may be busy; try again
                pass
            self._stop.wait(0.5)
