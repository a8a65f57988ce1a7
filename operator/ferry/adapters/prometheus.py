"""The Prometheus HTTP API (instant queries), as rollout analysis needs it.

Synchronous (requests); controllers run it in the "prometheus" pool. Any transport error, 5xx or
error answer raises ``PrometheusUnavailable``, which analysis turns into an Inconclusive verdict.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import requests


class PrometheusUnavailable(Exception):
    """Prometheus could not be reached or could not answer the query."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


class Prometheus:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()

    def query(self, promql: str) -> list[Sample]:
        """Samples of an instant query; NaN/Inf samples are dropped (no data, not a value)."""
        try:
            response = self.session.get(f"{self.url}/api/v1/query", params={"query": promql},
                                        timeout=self.timeout)
        except requests.RequestException as error:
            raise PrometheusUnavailable(f"{type(error).__name__}: {error}") from error
        if response.status_code >= 500:
            raise PrometheusUnavailable(f"HTTP {response.status_code}: {response.text[:200]}")
        try:
            body = response.json()
        except ValueError as error:
            raise PrometheusUnavailable(f"not JSON: {response.text[:200]}") from error
        if body.get("status") != "success":
            raise PrometheusUnavailable(f"{body.get('errorType')}: {body.get('error')}")
        data = body["data"]
        if data["resultType"] == "scalar":
            rows = [({}, data["result"])]
        elif data["resultType"] == "vector":
            rows = [(item["metric"], item["value"]) for item in data["result"]]
        else:
            raise PrometheusUnavailable(f"unexpected result type {data['resultType']}")
        samples = []
        for labels, (_, raw) in rows:
            value = float(raw)
            if math.isfinite(value):
                samples.append(Sample(dict(labels), value))
        return samples
