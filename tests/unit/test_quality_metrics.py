"""Realized metrics agree with scikit-learn; undefined ones are None with a reason."""

import numpy as np
import pytest
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve

from ferry.quality.metrics import business, calibration_error, classification, regression


def binary(seed: int, n: int = 5000):
    rng = np.random.default_rng(seed)
    p = rng.random(n).round(2)  # rounded: many ties in the scores
    y = (rng.random(n) < p).astype(int)
    yhat = (rng.random(n) < 0.5).astype(int) if seed % 2 else (p > 0.5).astype(int)
    return y, yhat, p


def ece(y, p):
    true, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], p), minlength=10)
    return float(np.sum(counts[counts > 0] * np.abs(true - predicted)) / len(p))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_binary_metrics_equal_sklearn(seed):
    y, yhat, p = binary(seed)
    result = classification(y, yhat, {"0": 1 - p, "1": p}).values
    expected = {"accuracy": sk.accuracy_score(y, yhat), "precision": sk.precision_score(y, yhat),
                "recall": sk.recall_score(y, yhat), "f1": sk.f1_score(y, yhat),
                "rocAuc": sk.roc_auc_score(y, p), "logLoss": sk.log_loss(y, np.column_stack([1 - p, p])),
                "calibrationError": ece(y, p)}
    assert result == pytest.approx(expected, abs=1e-9, rel=0)


def test_string_labels_positive_is_the_greater_class_and_multiclass_log_loss():
    rng = np.random.default_rng(5)
    classes = np.array(["a", "b", "c"])
    proba = rng.dirichlet([1, 1, 1], 2000)
    y = classes[[rng.choice(3, p=row) for row in proba]]
    yhat = classes[proba.argmax(axis=1)]
    result = classification(y, yhat, dict(zip(classes, proba.T, strict=True))).values
    assert result["precision"] == pytest.approx(sk.precision_score(y == "c", yhat == "c"), abs=1e-9)
    assert result["rocAuc"] == pytest.approx(sk.roc_auc_score(y == "c", proba[:, 2]), abs=1e-9)
    assert result["logLoss"] == pytest.approx(sk.log_loss(y, proba, labels=classes), abs=1e-9)
    assert result["accuracy"] == pytest.approx(sk.accuracy_score(y, yhat), abs=1e-9)


def test_labels_as_text_match_numeric_predictions_and_extreme_probabilities_are_clipped():
    y, yhat = np.array(["1", "0", "1"]), np.array([1, 0, 0])
    p = np.array([1.0, 0.0, 0.0])  # the last row is certain and wrong: log loss is finite
    result = classification(y, yhat, {"0": 1 - p, "1": p})
    assert result.values["accuracy"] == pytest.approx(2 / 3)
    assert result.values["logLoss"] == pytest.approx(sk.log_loss([1, 0, 1], np.column_stack([1 - p, p])))


def test_one_class_present_makes_auc_undefined_not_an_error():
    y, yhat, p = np.ones(50, int), np.r_[np.ones(40, int), np.zeros(10, int)], np.linspace(0, 1, 50)
    result = classification(y, yhat, {"0": 1 - p, "1": p})
    assert result.values["rocAuc"] is None
    assert "one class" in result.undefined["rocAuc"]
    assert result.values["recall"] == pytest.approx(sk.recall_score(y, yhat))


def test_zero_divisions_are_undefined_as_sklearn_nan():
    y, yhat = np.array([1, 0, 1]), np.zeros(3, int)
    result = classification(y, yhat, positive=1)
    assert np.isnan(sk.precision_score(y, yhat, zero_division=np.nan))
    assert result.values["precision"] is None and "predicted positives" in result.undefined["precision"]
    assert result.values["f1"] == sk.f1_score(y, yhat, zero_division=np.nan) == 0.0
    empty = classification(np.array([], int), np.array([], int), {"1": np.array([])}, positive=1)
    assert empty.values["accuracy"] is None and empty.values["rocAuc"] is None


def test_regression_metrics_equal_sklearn():
    rng = np.random.default_rng(3)
    y = np.r_[rng.normal(10, 5, 3000), 0.0]  # a zero label: MAPE divides by eps as sklearn does
    yhat = y + rng.normal(0, 1, y.size)
    assert regression(y, yhat).values == pytest.approx({
        "mae": sk.mean_absolute_error(y, yhat), "rmse": sk.root_mean_squared_error(y, yhat),
        "mape": sk.mean_absolute_percentage_error(y, yhat)}, rel=1e-12)
    assert regression([], []).undefined == {"mae": "no rows", "rmse": "no rows", "mape": "no rows"}


def test_calibration_error_of_calibrated_scores_is_small_and_of_overconfident_ones_large():
    rng = np.random.default_rng(9)
    p = rng.random(200_000)
    y = rng.random(p.size) < p
    assert calibration_error(p, y.astype(float)) < 0.01
    assert calibration_error(np.where(p > 0.5, 1.0, 0.0), y.astype(float)) > 0.2


def test_business_metric_skips_nulls():
    assert business([1.0, np.nan, 3.0]) == 2.0
    assert business([np.nan]) is None
