"""Operator metrics, named after controller-runtime's so dashboards read the same.

Objects-by-phase is a collector over an in-memory map filled by the workers, so a deleted object
disappears from the gauge instead of leaving a stale series.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter as PromCounter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_TOTAL = PromCounter(
    "ferry_reconcile_total", "Reconciles by kind and result.", ["kind", "result"], registry=REGISTRY)
RECONCILE_ERRORS = PromCounter(
    "ferry_reconcile_errors_total", "Reconcile errors by kind and reason.", ["kind", "reason"],
    registry=REGISTRY)
RECONCILE_DURATION = Histogram(
    "ferry_reconcile_duration_seconds", "Reconcile duration by kind.", ["kind"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
WORKQUEUE_DEPTH = Gauge(
    "ferry_workqueue_depth", "Objects waiting for a reconcile worker.", registry=REGISTRY)
LEADER = Gauge(
    "ferry_leader", "1 while this replica holds the leader Lease.", registry=REGISTRY)
EVENT_LOOP_LAG = Gauge(
    "ferry_event_loop_lag_seconds", "Delay of a periodic tick on the operator's event loop.",
    registry=REGISTRY)


class PhaseTracker:
    """Thread-safe map of object uid -> (kind, phase), exported as ferry_objects{kind,phase}."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[str, tuple[str, str]] = {}

    def set(self, uid: str, kind: str, phase: str) -> None:
        with self._lock:
            self._phases[uid] = (kind, phase)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._phases.pop(uid, None)

    def counts(self) -> Counter:
        with self._lock:
            return Counter(self._phases.values())

    def collect(self):
        family = GaugeMetricFamily("ferry_objects", "Ferry objects by kind and phase.",
                                   labels=["kind", "phase"])
        for (kind, phase), count in sorted(self.counts().items()):
            family.add_metric([kind, phase], count)
        yield family


PHASES = PhaseTracker()
REGISTRY.register(PHASES)


class FeatureFreshness:
    """Age of each FeaturePipeline's last good output, computed at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published: dict[str, tuple[tuple[str, str, str, str], float]] = {}

    def set(self, uid: str, labels: tuple[str, str, str, str], published_at: float) -> None:
        with self._lock:
            self._published[uid] = (labels, published_at)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._published.pop(uid, None)

    def collect(self):
        family = GaugeMetricFamily(
            "ferry_feature_output_age_seconds", "Age of the last validated feature output.",
            labels=["namespace", "name", "feature_set", "version"])
        now = time.time()
        with self._lock:
            items = list(self._published.values())
        for labels, published_at in sorted(items):
            family.add_metric(list(labels), max(0.0, now - published_at))
        yield family


FRESHNESS = FeatureFreshness()
REGISTRY.register(FRESHNESS)


class ModelQuality:
    """``ferry_model_quality{namespace,inferenceservice,version,slice,metric,estimated}``: each
    InferenceService's last ``status.quality`` (slice ``""``: the whole version), replaced on every
    reconcile and dropped with the service or its quality monitoring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._samples: dict[str, list[tuple[tuple[str, ...], float]]] = {}

    def set(self, uid: str, namespace: str, name: str, quality: dict | None) -> None:
        from ferry.reconcilers.quality import samples

        found = [((namespace, name, *labels), value) for labels, value in samples(quality)]
        with self._lock:
            self._samples[uid] = found

    def forget(self, uid: str) -> None:
        with self._lock:
            self._samples.pop(uid, None)

    def collect(self):
        family = GaugeMetricFamily(
            "ferry_model_quality", "Model quality metric from the quality monitor's last run "
            "(estimated=true: a CBPE estimate for rows still waiting for labels).",
            labels=["namespace", "inferenceservice", "version", "slice", "metric", "estimated"])
        with self._lock:
            items = [sample for found in self._samples.values() for sample in found]
        for labels, value in sorted(items):
            family.add_metric(list(labels), value)
        yield family


QUALITY = ModelQuality()
REGISTRY.register(QUALITY)


@contextmanager
def track_reconcile(kind: str):
    """Time one reconcile and count its outcome; exceptions are counted and re-raised."""
    start = time.perf_counter()
    try:
        yield
    except Exception as error:
        RECONCILE_TOTAL.labels(kind, "error").inc()
        RECONCILE_ERRORS.labels(kind, type(error).__name__).inc()
        raise
    else:
        RECONCILE_TOTAL.labels(kind, "success").inc()
    finally:
        RECONCILE_DURATION.labels(kind).observe(time.perf_counter() - start)
