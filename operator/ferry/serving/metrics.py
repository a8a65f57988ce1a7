"""Prometheus metrics of one model server; every series carries ``model`` and ``version``.

The rollout analysis reads them per version: error rate and p99 from the request series, and the
canary-vs-stable prediction distribution from ``ferry_serve_prediction_value``. That histogram is
observed once per response with numpy (a whole batch of rows at once) instead of one Python call
per row, so it costs nothing measurable at high request rates.
"""

from __future__ import annotations

import threading

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ValueHistogram:
    """A histogram collector with a vectorised ``observe_many``; NaN/None values are skipped."""

    def __init__(self, name: str, documentation: str, labels: dict[str, str],
                 buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self._labels = labels
        self._bounds = np.asarray(buckets, dtype=np.float64)
        self._counts = np.zeros(len(buckets) + 1, dtype=np.int64)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        values = values[~np.isnan(values)]
        if not len(values):
            return
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"),
                             minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum."""
        with self._lock:
            cumulative = np.cumsum(self._counts)
            total = self._sum
        bounds = [_le(bound) for bound in self._bounds] + ["+Inf"]
        return list(zip(bounds, (int(c) for c in cumulative), strict=True)), total

    def collect(self):
        family = HistogramMetricFamily(self.name, self.documentation, labels=list(self._labels))
        buckets, total = self.snapshot()
        family.add_metric(list(self._labels.values()), buckets, sum_value=total)
        yield family

    def describe(self):
        return [HistogramMetricFamily(self.name, self.documentation, labels=list(self._labels))]


def _le(bound: float) -> str:
    return repr(float(bound))


class ServeMetrics:
    """The server's series on a registry of its own (one server per process, but tests run several)."""

    def __init__(self, model: str, version: str, prediction_buckets: tuple[float, ...]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.model, self.version = model, version
        names = ["model", "version"]
        self._requests = Counter("ferry_serve_requests_total", "HTTP requests by route and status code.",
                                 [*names, "route", "code"], registry=self.registry)
        self._duration = Histogram("ferry_serve_request_duration_seconds", "Request latency by route.",
                                   [*names, "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        inflight = Gauge("ferry_serve_inflight_requests", "Requests being handled now.", names,
                         registry=self.registry)
        self.inflight = inflight.labels(model, version)
        logged = Counter("ferry_serve_prediction_log_rows", "Sampled prediction rows written to S3.",
                         names, registry=self.registry)
        self.log_rows = logged.labels(model, version)
        dropped = Counter("ferry_serve_prediction_log_dropped", "Sampled prediction rows dropped "
                          "(buffer full or write failed).", names, registry=self.registry)
        self.log_dropped = dropped.labels(model, version)
        self._mirrored = Counter("ferry_serve_mirrored", "Requests mirrored to the candidate by result "
                                 "(ok, error, dropped).", [*names, "result"], registry=self.registry)
        batch_rows = Histogram("ferry_serve_batch_rows", "Rows per predict call (dynamic batching).",
                               names, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096),
                               registry=self.registry)
        self.batch_rows = batch_rows.labels(model, version)
        self.prediction_value = ValueHistogram(
            "ferry_serve_prediction_value", "First numeric model output per predicted row.",
            {"model": model, "version": version}, prediction_buckets)
        self.registry.register(self.prediction_value)
        self._children: dict[tuple, object] = {}

    def request(self, route: str, code: int, seconds: float) -> None:
        key = (route, code)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self._requests.labels(self.model, self.version, route, str(code)),
                self._duration.labels(self.model, self.version, route))
        children[0].inc()
        children[1].observe(seconds)

    def mirrored(self, result: str) -> None:
        self._mirrored.labels(self.model, self.version, result).inc()
