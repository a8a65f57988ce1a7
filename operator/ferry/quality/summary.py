"""The bounded quality summary of a joined table: what would go to ``status.quality``.

Per model version: label coverage, realized metrics over the labelled rows, for classifiers with
a positive-class probability the CBPE estimate over the pending rows (``estimated: true``), the
business metric (mean of ``outcome`` over the labelled rows) and the same per slice, at most
``max_slices`` slices (in the order given; ``slicesOmitted`` counts the rest), so the object stays
small whatever the spec lists.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry.api.common import Slice
from ferry.quality import metrics
from ferry.quality.estimate import estimated
from ferry.quality.join import PROBA, slice_column

MAX_SLICES = 20


def task_of(joined: pa.Table) -> str:
    """``classification`` when the log has class probabilities or non-float predictions."""
    if any(c.startswith(PROBA) for c in joined.column_names):
        return "classification"
    return "regression" if pa.types.is_floating(joined.column("prediction").type) else "classification"


def summarize(joined: pa.Table, slices: Sequence[Slice] = (), *, task: str | None = None,
              positive=None, outcome: str | None = None, max_slices: int = MAX_SLICES) -> dict:
    """``{"versions": [{"version", "coverage", "realized", "estimated", "business", "slices"}]}``."""
    task = task or task_of(joined)
    if task == "classification" and positive is None:
        positive = default_positive(joined)
    shown = list(slices)[:max_slices]
    # Only what is counted travels through the filters below (ids and times are the bulk).
    joined = joined.drop_columns([c for c in ("timestamp", "label_time") if c in joined.column_names])
    versions = []
    for version in sorted(pc.unique(joined.column("version")).to_pylist(), key=str):
        rows = joined.filter(pc.equal(joined.column("version"), version))
        entry = {"version": version, **_part(rows, task, positive, outcome)}
        entry["slices"] = [{"name": s.name, **_part(rows.filter(rows.column(slice_column(s.name))), task,
                                                     positive, outcome)} for s in shown]
        entry["slicesOmitted"] = len(slices) - len(shown)
        versions.append(entry)
    return {"task": task, "versions": versions}


def default_positive(joined: pa.Table):
    """The greatest class among all labels and predictions, chosen once for every version and
    slice, so a part without labels (all pending) still gets its estimate."""
    labels = joined.column("label").drop_null().to_numpy(zero_copy_only=False)
    predictions = joined.column("prediction").drop_null().to_numpy(zero_copy_only=False)
    if not predictions.size:
        return None
    seen = np.unique(np.concatenate(metrics.comparable(labels, predictions)))
    return seen[-1].item()


def _part(rows: pa.Table, task: str, positive, outcome: str | None) -> dict:
    labelled_mask = pc.is_valid(rows.column("label"))
    labelled, pending = rows.filter(labelled_mask), rows.filter(pc.invert(labelled_mask))
    part = {"coverage": {"labelled": labelled.num_rows, "total": rows.num_rows,
                         "ratio": labelled.num_rows / rows.num_rows if rows.num_rows else None}}
    label, prediction = _numpy(labelled, "label"), _numpy(labelled, "prediction")
    probabilities = {c[len(PROBA):]: _numpy(labelled, c) for c in rows.column_names if c.startswith(PROBA)}
    if task == "regression":
        part["realized"] = _dump(metrics.regression(label, prediction))
    else:
        part["realized"] = _dump(metrics.classification(label, prediction, probabilities, positive))
        key = metrics.class_name(positive, list(probabilities)) if positive is not None else None
        if key is not None:
            part["estimated"] = {"estimated": True, "rows": pending.num_rows,
                                 **_dump(estimated(_numpy(pending, "prediction"),
                                                   _numpy(pending, PROBA + key), positive))}
    if outcome is not None:
        part["business"] = {"outcome": outcome, "mean": metrics.business(_numpy(labelled, outcome))}
    return part


def _numpy(table: pa.Table, column: str) -> np.ndarray:
    """A column as numpy (integers with nulls become floats with NaN)."""
    return table.column(column).to_numpy()


def _dump(result: metrics.Metrics) -> dict:
    return {"metrics": result.values, "undefined": result.undefined}
