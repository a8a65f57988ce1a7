"""The quality verdicts (``reconcilers.quality``): realized vs estimated, thresholds, minLabels, the
``QualityHealthy`` condition and the gauge's samples."""

from __future__ import annotations

import pytest

from ferry.api.inferenceservice import QualityMonitor
from ferry.reconcilers.quality import health, judge, judge_group, samples


def part(labelled: int, total: int, accuracy: float | None, estimate: float | None = None,
         outcome: float | None = None) -> dict:
    found = {"coverage": {"labelled": labelled, "total": total,
                          "ratio": labelled / total if total else None},
             "realized": {"metrics": {"accuracy": accuracy, "rocAuc": None},
                          "undefined": {"rocAuc": "only one class among the labels"}
                          | ({"accuracy": "no rows"} if accuracy is None else {})},
             "business": {"outcome": "clicked", "mean": outcome}}
    if estimate is not None:
        found["estimated"] = {"estimated": True, "rows": total - labelled,
                              "metrics": {"accuracy": estimate, "rocAuc": 0.7}, "undefined": {}}
    return found


def monitor(**fields) -> QualityMonitor:
    return QualityMonitor.model_validate({"minLabels": 50, "metrics": ["accuracy", "rocAuc"],
                                          "thresholds": {"accuracy": {"min": 0.8}}, **fields})


def metric(group: dict, name: str) -> dict:
    return next(m for m in group["metrics"] if m["name"] == name)


def test_enough_labels_and_a_breach_is_degraded():
    group, breaches = judge_group(part(60, 100, 0.7, estimate=0.95), monitor(), "classification")
    assert group["verdict"] == "Degraded" and breaches == ["accuracy 0.7 < min 0.8"]
    assert metric(group, "accuracy") == {"name": "accuracy", "value": 0.7, "estimated": False,
                                         "message": "accuracy 0.7 < min 0.8"}
    assert group["coverage"] == {"labelled": 60, "predicted": 100, "ratio": 0.6}


def test_enough_labels_within_range_is_healthy_and_an_undefined_metric_breaches_nothing():
    group, breaches = judge_group(part(60, 100, 0.9), monitor(thresholds={
        "accuracy": {"min": 0.8}, "rocAuc": {"min": 0.9}}), "classification")
    assert group["verdict"] == "Healthy" and breaches == []
    assert metric(group, "rocAuc") == {"name": "rocAuc", "value": None, "estimated": False,
                                       "message": "only one class among the labels"}


def test_a_max_threshold_and_the_business_outcome():
    group, breaches = judge_group(part(60, 100, 0.9, outcome=0.3), monitor(
        outcome="clicked", thresholds={"outcome": {"max": 0.2}}), "classification")
    assert group["verdict"] == "Degraded" and breaches == ["outcome 0.3 > max 0.2"]


def test_below_min_labels_is_inconclusive_with_the_estimate_that_never_degrades():
    group, breaches = judge_group(part(10, 100, 0.1, estimate=0.5), monitor(), "classification")
    assert group["verdict"] == "Inconclusive" and breaches == []
    assert metric(group, "accuracy") == {"name": "accuracy", "value": 0.5, "estimated": True,
                                         "message": None}
    assert metric(group, "rocAuc")["estimated"] is True


def test_below_min_labels_without_an_estimate_reports_the_realized_values():
    group, _ = judge_group(part(10, 100, 0.1), monitor(), "classification")
    assert group["verdict"] == "Inconclusive"
    assert metric(group, "accuracy") == {"name": "accuracy", "value": 0.1, "estimated": False,
                                         "message": None}
    everything_labelled, _ = judge_group(part(10, 10, 0.1, estimate=0.9), monitor(),
                                         "classification")
    assert metric(everything_labelled, "accuracy")["estimated"] is False  # no pending rows


def test_a_metric_the_log_cannot_give_is_reported_as_not_computed():
    group, _ = judge_group(part(60, 100, 0.9), monitor(metrics=["accuracy", "logLoss"]),
                           "classification")
    assert metric(group, "logLoss")["value"] is None
    assert metric(group, "logLoss")["message"].startswith("not computed")


def summary(*versions) -> dict:
    return {"task": "classification", "versions": [
        {"version": name, **whole, "slices": [{"name": "de", **de}], "slicesOmitted": 0}
        for name, whole, de in versions]}


@pytest.mark.parametrize("versions, verdict, message", [
    ((("v1", part(60, 100, 0.9), part(55, 60, 0.7)),), "Degraded", "v1/de: accuracy 0.7 < min 0.8"),
    ((("v1", part(60, 100, 0.9), part(10, 20, 0.9)), ("v2", part(5, 9, 0.2), part(1, 2, 1.0))),
     "Healthy", "1 of 4 version(s)/slice(s) within their thresholds"),
    ((("v2", part(5, 9, 0.2), part(1, 2, 1.0)),), "Inconclusive",
     "fewer than minLabels (50) labelled rows: v2 has 5"),
    ((), "Inconclusive", "no predictions in the window"),
])
def test_the_service_verdict(versions, verdict, message):
    judged = judge(summary(*versions), monitor())
    assert (judged["verdict"], judged["message"]) == (verdict, message)


@pytest.mark.parametrize("verdict, status", [("Healthy", "True"), ("Degraded", "False"),
                                             ("Inconclusive", "Unknown")])
def test_the_condition_follows_the_verdict(verdict, status):
    assert health({"verdict": verdict, "message": "m", "runId": "job-1"}) == (
        status, verdict, "m (run job-1)")


def test_before_the_first_run_the_condition_waits():
    assert health(None) == ("Unknown", "AwaitingFirstRun",
                            "the quality monitor has not reported yet")


def test_samples_are_every_defined_metric_by_version_slice_and_estimate():
    judged = judge(summary(("v1", part(60, 100, 0.9), part(10, 20, 0.4, estimate=0.6))),
                   monitor())
    assert samples(judged) == [(("v1", "", "accuracy", "false"), 0.9),
                               (("v1", "de", "accuracy", "true"), 0.6),
                               (("v1", "de", "rocAuc", "true"), 0.7)]
