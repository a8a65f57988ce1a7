"""Client traffic for serving tests, as a user's client sends it: to a Service's ClusterIP, which
kube-proxy on the real node balances over the ready endpoints the EndpointSlice controller lists.
Every answer is recorded with its time, status code and prediction; a refused or failed request is
an answer with code 0, never retried.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field

import requests
from kubernetes import client

from support.waiting import wait_for


@dataclass
class Answer:
    at: float
    code: int
    prediction: float | None
    address: str
    error: str = ""
    """Why no HTTP answer came (refused, reset, timed out); empty for an HTTP answer."""


def service_address(api_client, namespace: str, service: str) -> str:
    """``clusterIP:port`` of a Service (its first port)."""
    spec = client.CoreV1Api(api_client).read_namespaced_service(service, namespace).spec
    return f"{spec.cluster_ip}:{spec.ports[0].port}"


def endpoint_addresses(api_client, namespace: str, service: str) -> list[str]:
    """The ready ``ip:port`` endpoints of a Service, from its EndpointSlices."""
    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}").items
    return sorted(f"{address}:{port.port}"
                  for piece in slices for endpoint in piece.endpoints or []
                  if endpoint.conditions and endpoint.conditions.ready
                  and not endpoint.conditions.terminating
                  for address in endpoint.addresses for port in (piece.ports or [])[:1])


def predict(address: str, x0: float, timeout: float = 5.0) -> tuple[int, float | None]:
    body = {"dataframe_split": {"columns": ["x0", "x1"], "data": [[x0, 0.5]]}}
    response = requests.post(f"http://{address}/invocations", json=body, timeout=timeout)
    if response.status_code != 200:
        return response.status_code, None
    return 200, round(float(response.json()["predictions"][0]), 6)


@dataclass
class Traffic:
    """Background clients of one Service, through its ClusterIP; ``inputs`` cycle. Six clients
    pausing 50 ms keep the Service above 50 req/s, the load the rollout tests hold, also on a
    busy 2-core machine (four gave 60 req/s on a quiet one, 40 under the full suite)."""

    api_client: object
    namespace: str
    service: str
    inputs: tuple[float, ...] = (1.0, -1.0)
    pause: float = 0.05
    clients: int = 6
    answers: list[Answer] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> Traffic:
        """Starts once the Service answers: kube-proxy writes a new Service's rules a moment after
        its pods are ready, and what the tests count is what a rollout loses, not that moment."""
        address = service_address(self.api_client, self.namespace, self.service)
        wait_for(lambda: predict(address, self.inputs[0])[0] in (200, 500), timeout=60,
                 message=f"{self.service} answers through its ClusterIP")
        self._threads = [threading.Thread(target=self._run, daemon=True)
                         for _ in range(self.clients)]
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def _run(self) -> None:
        address = service_address(self.api_client, self.namespace, self.service)
        cycle = itertools.cycle(self.inputs)
        while not self._stop.is_set():
            error = ""
            try:
                code, value = predict(address, next(cycle))
            except requests.RequestException as failure:
                code, value, error = 0, None, f"{type(failure).__name__}: {failure}"
            self.answers.append(Answer(time.monotonic(), code, value, address, error))
            self._stop.wait(self.pause)

    def lost(self) -> list[str]:
        """Requests that got no HTTP answer at all, as ``seconds-into-traffic: error``."""
        first = min((a.at for a in self.answers), default=0.0)
        return [f"{a.at - first:.1f}s: {a.error}" for a in self.answers if a.code == 0]

    def rate(self) -> float:
        """Requests per second over the whole run."""
        if len(self.answers) < 2:
            return 0.0
        times = [a.at for a in self.answers]
        return len(times) / max(max(times) - min(times), 1e-9)

    def since(self, moment: float) -> list[Answer]:
        return [a for a in self.answers if a.at >= moment]

    def longest_gap_without_success(self, start: float, end: float) -> float:
        """Seconds between consecutive successful answers (or the window's edges)."""
        times = [start] + [a.at for a in self.answers if start <= a.at <= end and a.code == 200]
        times.append(end)
        return max(b - a for a, b in itertools.pairwise(times))


STUCK = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError")


def assert_not_stuck(cluster, namespace: str, selector: str) -> None:
    """Fail at once when a pod of ``selector`` can no longer become ready by waiting (a crash
    loop, an image that cannot be pulled), with that pod's last log lines."""
    import json

    pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", selector, "-o",
                                      "json").stdout)["items"]
    for pod in pods:
        for container in pod.get("status", {}).get("containerStatuses") or []:
            reason = ((container.get("state") or {}).get("waiting") or {}).get("reason")
            if reason in STUCK:
                name = pod["metadata"]["name"]
                logs = cluster.kubectl("logs", name, "-n", namespace, "--previous", "--tail", "40",
                                       check=False)
                raise AssertionError(f"pod {name} is {reason}: {logs.stdout or logs.stderr}")
