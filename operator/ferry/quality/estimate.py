"""Estimated metrics for predictions whose labels are still pending (confidence-based performance
estimation, CBPE, as NannyML's).

With a calibrated probability p that a row is of the positive class, the row is expected to be a
true positive with weight p and a false positive with weight 1-p when predicted positive (a false
negative p, a true negative 1-p when predicted negative). Summing those weights gives an expected
confusion matrix, hence expected accuracy, precision, recall and F1; weighing each row as a
positive by p and a negative by 1-p gives the expected ROC AUC. The estimate is only as good as
the calibration: it follows covariate shift (the probabilities move with the inputs) but not
concept drift, where P(label | inputs) itself changes and the model's probabilities no longer
describe the outcome. Results are marked ``estimated``.
"""

from __future__ import annotations

import numpy as np

from ferry.quality.metrics import Metrics, comparable, confusion_metrics, roc_auc


def estimated(predictions, positive_probability, positive) -> Metrics:
    """Expected accuracy, precision, recall, F1 and ROC AUC of unlabelled rows."""
    probability = np.asarray(positive_probability, dtype=np.float64)
    said, positive_value = comparable(np.asarray(predictions), np.asarray([positive]))
    said_positive = said == positive_value[0]
    tp = float(probability[said_positive].sum())
    fp = float(said_positive.sum()) - tp
    fn = float(probability[~said_positive].sum())
    tn = float((~said_positive).sum()) - fn
    result = Metrics()
    confusion_metrics(result, tp, fp, tn, fn)
    result.set("rocAuc", roc_auc(probability, probability, 1.0 - probability),
               "no rows or probabilities all 0 or all 1")
    return result
