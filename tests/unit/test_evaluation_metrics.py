"""The evaluation's metrics agree with scikit-learn and Fairlearn on the same data; small groups
are Inconclusive; gates are judged on the confidence bound."""

from __future__ import annotations

import numpy as np
import pytest
from fairlearn.metrics import (MetricFrame, demographic_parity_difference,
                               demographic_parity_ratio, equalized_odds_difference,
                               false_positive_rate, true_positive_rate)
from sklearn import metrics as sk

from ferry.evaluation.gates import SliceScore, non_inferiority, slice_minimum
from ferry.evaluation.metrics import Interval, bootstrap, classification_metrics, fairness, metric


@pytest.fixture(scope="module")
def holdout():
    rng = np.random.default_rng(7)
    n = 5000
    group = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2])
    y_true = rng.integers(0, 2, n)
    bias = np.where(group == "a", 0.15, np.where(group == "b", -0.05, 0.0))
    y_pred = (rng.random(n) < 0.35 + 0.4 * y_true + bias).astype(int)
    return y_true, y_pred, group


def test_classification_metrics_match_scikit_learn(holdout):
    y_true, y_pred, _ = holdout
    ours = classification_metrics(y_true, y_pred)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y_true, y_pred))
    assert ours["precision"] == pytest.approx(sk.precision_score(y_true, y_pred))
    assert ours["recall"] == pytest.approx(sk.recall_score(y_true, y_pred))
    assert ours["f1"] == pytest.approx(sk.f1_score(y_true, y_pred))


def test_fairness_matches_fairlearn(holdout):
    y_true, y_pred, group = holdout
    ours = fairness(y_true, y_pred, group, "group", min_samples=30)
    kwargs = {"sensitive_features": group}
    assert ours.demographic_parity_difference == pytest.approx(
        demographic_parity_difference(y_true, y_pred, **kwargs))
    assert ours.selection_rate_ratio == pytest.approx(demographic_parity_ratio(y_true, y_pred, **kwargs))
    assert ours.equalized_odds_difference == pytest.approx(
        equalized_odds_difference(y_true, y_pred, **kwargs))
    frame = MetricFrame(metrics={"tpr": true_positive_rate, "fpr": false_positive_rate},
                        y_true=y_true, y_pred=y_pred, sensitive_features=group)
    for rates in ours.groups:
        assert rates.tpr == pytest.approx(frame.by_group.loc[rates.group, "tpr"])
        assert rates.fpr == pytest.approx(frame.by_group.loc[rates.group, "fpr"])
    assert ours.selection_rate_ratio < 0.8  # group a is favoured: the four-fifths rule fails


def test_groups_below_the_minimum_are_inconclusive_never_passed(holdout):
    y_true, y_pred, group = holdout
    group = group.astype(object)
    group[:5] = "tiny"
    report = fairness(y_true, y_pred, group, "group", min_samples=30)
    assert report.inconclusive == ["tiny"]
    assert not next(g for g in report.groups if g.group == "tiny").conclusive
    counted = group != "tiny"
    assert report.demographic_parity_difference == pytest.approx(demographic_parity_difference(
        y_true[counted], y_pred[counted], sensitive_features=group[counted]))
    alone = fairness(y_true[:40], y_pred[:40], np.where(np.arange(40) < 35, "x", "y"), "g", 30)
    assert alone.selection_rate_ratio is None and alone.inconclusive == ["y"]


def test_bootstrap_interval_contains_the_value_and_narrows_with_data(holdout):
    y_true, y_pred, _ = holdout
    wide = bootstrap(metric("accuracy"), y_true[:300], y_pred[:300], seed=1)
    narrow = bootstrap(metric("accuracy"), y_true, y_pred, seed=1)
    assert wide.lower <= wide.value <= wide.upper and narrow.lower <= narrow.value <= narrow.upper
    assert narrow.upper - narrow.lower < wide.upper - wide.lower
    assert bootstrap(metric("accuracy"), y_true, y_pred, seed=1) == narrow  # reproducible
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        metric("auc")


def test_gates_are_judged_on_the_lower_bound():
    scores = [SliceScore("eu", 500, Interval(0.82, 0.80, 0.84)),
              SliceScore("us", 500, Interval(0.81, 0.76, 0.86)),   # point above, bound below
              SliceScore("apac", 10, Interval(0.99, 0.70, 1.0))]
    verdict = slice_minimum(scores, 0.78, min_samples=30)
    assert verdict.verdict == "Failed" and verdict.failed == ["us"] and verdict.inconclusive == ["apac"]
    assert slice_minimum(scores[:1] + scores[2:], 0.78, 30).verdict == "Inconclusive"
    assert slice_minimum(scores[:1], 0.78, 30).verdict == "Passed"
    champion = {"eu": 0.81, "us": 0.80}
    assert non_inferiority(scores[:1], champion, 0.02, 30).verdict == "Passed"
    assert non_inferiority(scores[:2], champion, 0.02, 30).failed == ["us"]
