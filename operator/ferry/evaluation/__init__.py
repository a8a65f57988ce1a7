"""Independent evaluation of a registered model on a pinned holdout: overall, per-slice and
fairness metrics with bootstrap confidence intervals, and the gates judged on their bounds."""
