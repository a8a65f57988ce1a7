"""Realized quality metrics of labelled predictions (pure numpy; equal to scikit-learn's to 1e-9).

Classification: accuracy; precision, recall and F1 of the ``positive`` class against all others
(default: the greater of the classes seen, as scikit-learn takes for ``{0, 1}`` or ``{"no",
"yes"}``); ROC AUC of the positive class's probability; log loss over all ``ferry_proba_*``
columns (clipped to machine epsilon as scikit-learn does); expected calibration error of the
positive probability in 10 equal-width bins (bin edges as ``sklearn.calibration.calibration_curve``).
Regression: MAE, RMSE, MAPE (scikit-learn's: relative to ``max(|y|, eps)``). A metric that is
undefined on the rows (AUC with one class present, precision without predicted positives, no
rows) is ``None`` with a reason in ``undefined``, never an error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

BINS = 10
EPS = np.finfo(np.float64).eps


@dataclass
class Metrics:
    """Metric values by name (None where undefined) and why each undefined one is."""

    values: dict[str, float | None] = field(default_factory=dict)
    undefined: dict[str, str] = field(default_factory=dict)

    def set(self, name: str, value: float | None, reason: str = "") -> None:
        self.values[name] = None if value is None else float(value)
        if value is None:
            self.undefined[name] = reason


def comparable(labels: np.ndarray, predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels and predictions of one type: numbers stay numbers (1 equals 1.0), anything else is
    compared as text (label files may hold ``"1"`` for a model predicting ``1``)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if labels.dtype.kind in "biuf" and predictions.dtype.kind in "biuf":
        return labels.astype(np.float64), predictions.astype(np.float64)
    return labels.astype(str), predictions.astype(str)


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def confusion_metrics(result: Metrics, tp: float, fp: float, tn: float, fn: float) -> None:
    """Accuracy, precision, recall and F1 from (possibly expected) confusion counts."""
    total = tp + fp + tn + fn
    result.set("accuracy", _ratio(tp + tn, total), "no rows")
    result.set("precision", _ratio(tp, tp + fp), "no predicted positives")
    result.set("recall", _ratio(tp, tp + fn), "no positive labels")
    result.set("f1", _ratio(2 * tp, 2 * tp + fp + fn), "no positives predicted or labelled")


def roc_auc(scores: np.ndarray, positive: np.ndarray, negative: np.ndarray) -> float | None:
    """Area under the ROC curve where each row weighs ``positive`` as a positive and ``negative``
    as a negative (0/1 for labels; p and 1-p for the expected curve); ties in score as trapezoids.
    None when either weight sums to zero."""
    if not scores.size:
        return None
    order = np.argsort(-scores, kind="stable")
    scores, positive, negative = scores[order], positive[order], negative[order]
    last = np.r_[scores[1:] != scores[:-1], True]  # the last row of each distinct score
    tps, fps = np.cumsum(positive)[last], np.cumsum(negative)[last]
    if tps[-1] <= 0 or fps[-1] <= 0:
        return None
    tpr, fpr = np.r_[0.0, tps / tps[-1]], np.r_[0.0, fps / fps[-1]]
    return float(np.trapezoid(tpr, fpr))


def calibration_error(probability: np.ndarray, outcome: np.ndarray, bins: int = BINS) -> float | None:
    """Expected calibration error: per bin |mean probability - share of positives|, weighted by
    the bin's rows."""
    if not probability.size:
        return None
    ids = np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], probability)
    counts = np.bincount(ids, minlength=bins)
    gap = np.abs(np.bincount(ids, probability, bins) - np.bincount(ids, outcome, bins))
    return float(gap.sum() / counts.sum())


def classification(labels, predictions, probabilities: dict | None = None,
                   positive=None) -> Metrics:
    """Realized classification metrics; ``probabilities``: class name (as in ``ferry_proba_<class>``)
    → probability per row."""
    labels, predictions = comparable(labels, predictions)
    result = Metrics()
    if positive is None:
        seen = np.unique(np.concatenate([labels, predictions]))
        positive = seen[-1] if seen.size else None
    positive = np.asarray(positive).astype(labels.dtype) if positive is not None else None
    is_positive, said_positive = labels == positive, predictions == positive
    tp = int(np.sum(is_positive & said_positive))
    fp = int(np.sum(said_positive)) - tp
    fn = int(np.sum(is_positive)) - tp
    confusion_metrics(result, tp, fp, labels.size - tp - fp - fn, fn)
    # Accuracy over all classes, not the positive class's one-vs-rest (they differ beyond two).
    result.set("accuracy", _ratio(int(np.sum(labels == predictions)), labels.size), "no rows")
    if not probabilities:
        return result
    names = list(probabilities)
    key = class_name(positive, names)
    if key is None:
        reason = f"no probability column for the positive class {positive!r}"
        for name in ("rocAuc", "logLoss", "calibrationError"):
            result.set(name, None, reason)
        return result
    score = np.asarray(probabilities[key], dtype=np.float64)
    outcome = is_positive.astype(np.float64)
    result.set("rocAuc", roc_auc(score, outcome, 1.0 - outcome),
               "only one class among the labels" if labels.size else "no rows")
    result.set("calibrationError", calibration_error(score, outcome), "no rows")
    result.set(*_log_loss(labels, probabilities, names))
    return result


def class_name(value, names: list[str]) -> str | None:
    """The probability column's class name for a label value (1.0 and "1" both name class "1")."""
    for name in names:
        if name == str(value) or (np.asarray(value).dtype.kind == "f" and _number(name) == value):
            return name
    return None


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _log_loss(labels: np.ndarray, probabilities: dict, names: list[str]) -> tuple:
    if not labels.size:
        return "logLoss", None, "no rows"
    matrix = np.column_stack([np.asarray(probabilities[n], dtype=np.float64) for n in names])
    picked = np.full(labels.size, -1)
    for index, name in enumerate(names):
        value = _number(name) if labels.dtype.kind == "f" else name
        picked[labels == value] = index
    if (picked < 0).any():
        return "logLoss", None, "a label is not one of the probability columns' classes"
    chosen = np.clip(matrix, EPS, 1 - EPS)[np.arange(labels.size), picked]
    return "logLoss", float(-np.mean(np.log(chosen))), ""


def regression(labels, predictions) -> Metrics:
    """Realized regression metrics."""
    labels = np.asarray(labels, dtype=np.float64)
    error = np.asarray(predictions, dtype=np.float64) - labels
    result = Metrics()
    if not labels.size:
        for name in ("mae", "rmse", "mape"):
            result.set(name, None, "no rows")
        return result
    result.set("mae", np.mean(np.abs(error)))
    result.set("rmse", np.sqrt(np.mean(error ** 2)))
    result.set("mape", np.mean(np.abs(error) / np.maximum(np.abs(labels), EPS)))
    return result


def business(outcome) -> float | None:
    """The business metric: the mean of an outcome column over the labelled rows (nulls skipped)."""
    values = np.asarray(outcome, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else None
