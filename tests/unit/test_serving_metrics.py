"""Serving metrics: the vectorised prediction-value histogram and the fixed model/version labels."""

import numpy as np
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ferry.serving.metrics import ServeMetrics, ValueHistogram


def test_buckets_are_cumulative_upper_bounds_and_nan_is_skipped():
    histogram = ValueHistogram("v", "values", {"model": "m"}, (0.0, 0.5, 1.0))
    histogram.observe_many(np.array([0.0, 0.2, 0.5, 0.7, 1.0, 3.0, np.nan]))
    buckets, total = histogram.snapshot()
    assert buckets == [("0.0", 1), ("0.5", 3), ("1.0", 5), ("+Inf", 6)]
    assert total == 0.0 + 0.2 + 0.5 + 0.7 + 1.0 + 3.0
    histogram.observe_many(np.array([np.nan]))
    assert histogram.snapshot()[0][-1] == ("+Inf", 6)


def test_every_series_carries_model_and_version():
    metrics = ServeMetrics("fraud", "4", (0.5, 1.0))
    metrics.request("/invocations", 200, 0.003)
    metrics.request("/invocations", 400, 0.001)
    metrics.mirrored("ok")
    metrics.log_rows.inc(5)
    metrics.log_dropped.inc(2)
    metrics.batch_rows.observe(32)
    metrics.prediction_value.observe_many(np.array([0.25, 0.75]))
    samples = [sample for family in text_string_to_metric_families(
        generate_latest(metrics.registry).decode()) for sample in family.samples]
    names = {sample.name for sample in samples}
    assert {"ferry_serve_requests_total", "ferry_serve_request_duration_seconds_bucket",
            "ferry_serve_inflight_requests", "ferry_serve_prediction_log_rows_total",
            "ferry_serve_prediction_log_dropped_total", "ferry_serve_mirrored_total",
            "ferry_serve_batch_rows_bucket", "ferry_serve_prediction_value_bucket"} <= names
    for sample in samples:
        if sample.name.startswith("ferry_serve_") and not sample.name.endswith("_created"):
            assert (sample.labels["model"], sample.labels["version"]) == ("fraud", "4"), sample
    codes = {s.labels["code"]: s.value for s in samples if s.name == "ferry_serve_requests_total"}
    assert codes == {"200": 1.0, "400": 1.0}
    values = {s.labels["le"]: s.value for s in samples if s.name == "ferry_serve_prediction_value_bucket"}
    assert values == {"0.5": 1.0, "1.0": 2.0, "+Inf": 2.0}
