"""Prometheus metrics of one model server; every series carries ``model`` and ``version``.

The rollout analysis reads them per version: error rate and p99 from the request series, and the
canary-vs-stable prediction distribution from ``ferry_serve_prediction_value``. That histogram is
observed once per response with numpy (a whole batch of rows at once) instead of one Python call
per row, so it costs nothing measurable at high request rates.
"""

from __future__ import annotations

import os
import threading

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ValueHistogram:
    """A prometheus ``Histogram`` child with a vectorised ``observe_many``; NaN values are skipped.

    The counts live in the histogram's own values, so they follow prometheus_client's storage:
    in-process, or memory-mapped files under PROMETHEUS_MULTIPROC_DIR that one ``/metrics``
    answer sums over every worker process. ``observe_many`` adds each bucket's count at once; the
    histogram keeps per-bucket (not cumulative) counts, exactly what ``observe`` would leave.
    """

    def __init__(self, name: str, documentation: str, labels: dict[str, str],
                 buckets: tuple[float, ...], registry: CollectorRegistry | None = None) -> None:
        bounds = [bound for bound in buckets if bound != float("inf")]
        self._bounds = np.asarray(bounds, dtype=np.float64)
        histogram = Histogram(name, documentation, list(labels), buckets=bounds,
                              registry=registry if registry is not None else CollectorRegistry())
        self._child = histogram.labels(*labels.values())
        self._lock = threading.Lock()

    def observe_many(self, values: np.ndarray) -> None:
        values = values[~np.isnan(values)]
        if not len(values):
            return
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"),
                             minlength=len(self._bounds) + 1)
        with self._lock:
            for index in np.flatnonzero(counts):
                self._child._buckets[index].inc(int(counts[index]))
            self._child._sum.inc(float(values.sum()))

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        """Cumulative ``(le, count)`` pairs ending with ``+Inf``, and the sum (this process)."""
        samples = self._child._child_samples()
        buckets = [(s.labels["le"], int(s.value)) for s in samples if s.name == "_bucket"]
        total = next(s.value for s in samples if s.name == "_sum")
        return [(_le(le) if le != "+Inf" else le, count) for le, count in buckets], total


def _le(bound) -> str:
    return repr(float(bound))


class ServeMetrics:
    """The server's series on a registry of its own (one server per process, but tests run several).

    With PROMETHEUS_MULTIPROC_DIR set (``ferry serve`` with several workers), the values are
    written to that folder and ``exposition`` answers for all the workers together.
    """

    def __init__(self, model: str, version: str, prediction_buckets: tuple[float, ...]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.model, self.version = model, version
        names = ["model", "version"]
        self._requests = Counter("ferry_serve_requests_total", "HTTP requests by route and status code.",
                                 [*names, "route", "code"], registry=self.registry)
        self._duration = Histogram("ferry_serve_request_duration_seconds", "Request latency by route.",
                                   [*names, "route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        inflight = Gauge("ferry_serve_inflight_requests", "Requests being handled now.", names,
                         registry=self.registry, multiprocess_mode="livesum")
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
            {"model": model, "version": version}, prediction_buckets, self.registry)
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

    def exposition(self) -> bytes:
        """The text ``/metrics`` answers: this process's registry, or every worker's series."""
        folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not folder:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, folder)
        return generate_latest(registry)

    def mirrored(self, result: str) -> None:
        self._mirrored.labels(self.model, self.version, result).inc()
