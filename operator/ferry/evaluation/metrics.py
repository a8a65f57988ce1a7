"""Binary-classification metrics, per-group rates and fairness measures (pure numpy).

Definitions follow Fairlearn's, so values agree with it on the same data:

- selection rate: share of predicted positives; TPR/FPR per group;
- demographic-parity difference: max − min selection rate over the groups;
- selection-rate ratio: min / max selection rate (the four-fifths rule passes at ≥ 0.8);
- equalized-odds difference: the larger of the TPR gap and the FPR gap across groups.

A group with fewer than ``min_samples`` rows is reported but marked Inconclusive and left out of
the cross-group measures: a tiny group can neither pass nor fail a fairness gate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

METRICS = ("accuracy", "precision", "recall", "f1", "selection_rate")


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def confusion(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[int, int, int, int]:
    """(tp, fp, tn, fn) for 0/1 labels."""
    y_true, y_pred = np.asarray(y_true).astype(bool), np.asarray(y_pred).astype(bool)
    tp = int(np.sum(y_true & y_pred))
    fp = int(np.sum(~y_true & y_pred))
    fn = int(np.sum(y_true & ~y_pred))
    return tp, fp, int(y_true.size - tp - fp - fn), fn


def classification_metrics(y_true, y_pred) -> dict[str, float]:
    tp, fp, tn, fn = confusion(y_true, y_pred)
    n = tp + fp + tn + fn
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {"accuracy": _ratio(tp + tn, n), "precision": precision, "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "selection_rate": _ratio(tp + fp, n)}


@dataclass(frozen=True)
class GroupRates:
    group: str
    samples: int
    selection_rate: float
    tpr: float
    fpr: float
    conclusive: bool


@dataclass(frozen=True)
class Fairness:
    column: str
    groups: list[GroupRates]
    selection_rate_ratio: float | None       # None: fewer than two conclusive groups
    demographic_parity_difference: float | None
    equalized_odds_difference: float | None
    inconclusive: list[str] = field(default_factory=list)


def group_rates(y_true, y_pred, sensitive, min_samples: int = 1) -> list[GroupRates]:
    y_true, y_pred, sensitive = np.asarray(y_true), np.asarray(y_pred), np.asarray(sensitive)
    rates = []
    for group in sorted(np.unique(sensitive), key=str):
        mask = sensitive == group
        tp, fp, tn, fn = confusion(y_true[mask], y_pred[mask])
        n = int(mask.sum())
        rates.append(GroupRates(str(group), n, _ratio(tp + fp, n), _ratio(tp, tp + fn),
                                _ratio(fp, fp + tn), n >= min_samples))
    return rates


def fairness(y_true, y_pred, sensitive, column: str, min_samples: int = 1) -> Fairness:
    groups = group_rates(y_true, y_pred, sensitive, min_samples)
    counted = [g for g in groups if g.conclusive]
    inconclusive = [g.group for g in groups if not g.conclusive]
    if len(counted) < 2:
        return Fairness(column, groups, None, None, None, inconclusive)
    selection = [g.selection_rate for g in counted]
    tpr, fpr = [g.tpr for g in counted], [g.fpr for g in counted]
    return Fairness(column, groups, _ratio(min(selection), max(selection)),
                    max(selection) - min(selection),
                    max(max(tpr) - min(tpr), max(fpr) - min(fpr)), inconclusive)


@dataclass(frozen=True)
class Interval:
    value: float
    lower: float
    upper: float


def bootstrap(statistic, y_true, y_pred, resamples: int = 200, confidence: float = 0.95,
              seed: int = 0) -> Interval:
    """Percentile bootstrap interval of ``statistic(y_true, y_pred)`` over rows drawn with
    replacement (seeded: the same holdout gives the same interval)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    rng = np.random.default_rng(seed)
    values = np.empty(resamples)
    for i in range(resamples):
        rows = rng.integers(0, y_true.size, y_true.size)
        values[i] = statistic(y_true[rows], y_pred[rows])
    alpha = (1 - confidence) / 2
    return Interval(float(statistic(y_true, y_pred)), float(np.quantile(values, alpha)),
                    float(np.quantile(values, 1 - alpha)))


def metric(name: str):
    """A statistic for ``bootstrap``: one classification metric by name."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; one of {', '.join(METRICS)}")
    return lambda y_true, y_pred: classification_metrics(y_true, y_pred)[name]
