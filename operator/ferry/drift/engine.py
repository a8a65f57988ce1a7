"""Compare a current dataset with a reference, column by column, and reach a verdict.

Decisions (documented for users in the README):
- monitored columns: ``features`` when given, else every reference column except ``exclude``,
  ``prediction*`` and ``ferry_*`` (the prediction log's bookkeeping columns);
- ``prediction*`` columns present in both datasets are compared as *prediction drift*: reported,
  but not counted in the dataset's drift share (that share is about the model's inputs);
- a monitored column missing from the current data, or changed between numeric and categorical, is
  schema drift (score 1.0); a column the reference does not have is reported as unknown;
- numeric columns with at most 5 distinct reference values are compared as categories (Evidently);
- fewer than ``minRows`` rows in either dataset, or no column with ``minRows`` non-null values, is
  ``Inconclusive`` — never ``Drifted``.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ferry.api.inferenceservice import DriftMonitor
from ferry.drift import stats

SMALL_REFERENCE_ROWS = 1000
FEW_DISTINCT_VALUES = 5
PVALUE_METHODS = {"ks", "chiSquare"}
DEFAULT_THRESHOLDS = {"ks": 0.05, "chiSquare": 0.05, "wasserstein": 0.1, "jensenShannon": 0.1,
                      "psi": 0.1}
METHODS_FOR = {"numeric": {"ks", "wasserstein", "psi", "jensenShannon"},
               "categorical": {"chiSquare", "jensenShannon", "psi"}}
SCHEMA_SCORE = 1.0
MAX_WORKERS = 4

DRIFTED, NO_DRIFT, INCONCLUSIVE = "Drifted", "NoDrift", "Inconclusive"


@dataclass
class ColumnResult:
    name: str
    role: str                           # feature | prediction
    verdict: str                        # Drifted | NoDrift | Inconclusive
    kind: str | None = None             # numeric | categorical
    method: str | None = None
    threshold: float | None = None
    score: float | None = None
    reasons: list[str] = field(default_factory=list)
    reference_type: str | None = None
    current_type: str | None = None
    reference_rows: int = 0             # non-null values compared
    current_rows: int = 0
    reference_null_rate: float | None = None
    current_null_rate: float | None = None
    statistics: dict[str, Any] = field(default_factory=dict)
    histogram: dict[str, Any] | None = None


def kind_of(arrow_type: pa.DataType) -> str | None:
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type) \
            or pa.types.is_decimal(arrow_type):
        return "numeric"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) \
            or pa.types.is_boolean(arrow_type) or pa.types.is_dictionary(arrow_type):
        return "categorical"
    return None


def is_bookkeeping(name: str) -> bool:
    return name.startswith("ferry_")


def is_prediction(name: str) -> bool:
    return name == "prediction" or name.startswith("prediction_")


def monitored_columns(config: DriftMonitor, reference_columns: list[str]) -> list[str]:
    if config.features:
        return list(config.features)
    excluded = set(config.exclude)
    return [c for c in reference_columns
            if c not in excluded and not is_bookkeeping(c) and not is_prediction(c)]


def default_method(kind: str, reference_rows: int) -> str:
    small = reference_rows <= SMALL_REFERENCE_ROWS
    if kind == "numeric":
        return "ks" if small else "wasserstein"
    return "chiSquare" if small else "jensenShannon"


def method_and_threshold(config: DriftMonitor, name: str, kind: str,
                         reference_rows: int) -> tuple[str, float]:
    method = config.methods.get(name) or config.methods.get("*") or default_method(kind,
                                                                                   reference_rows)
    threshold = config.thresholds.get(name, config.thresholds.get("*", DEFAULT_THRESHOLDS[method]))
    return method, float(threshold)


def is_drift(method: str, score: float, threshold: float) -> bool:
    return score < threshold if method in PVALUE_METHODS else score >= threshold


def numeric_values(column: pa.ChunkedArray) -> np.ndarray:
    """Sorted float64 values without nulls and NaNs."""
    column = pc.cast(column, pa.float64())
    if column.null_count:
        column = column.drop_null()
    # DLPack views of the chunks: pyarrow's to_numpy would import pandas (~0.4 s) for the same.
    values = np.concatenate([np.from_dlpack(chunk) for chunk in column.chunks] or [np.empty(0)])
    values.sort()
    # NaNs sort last: cut them off with a binary search instead of a pass over the values.
    return values[:np.searchsorted(values, np.nan)]


def more_distinct_than(sorted_values: np.ndarray, limit: int) -> bool:
    """Whether a sorted sample holds more than ``limit`` distinct values, hopping past each value's
    copies with a binary search instead of a pass over the sample."""
    start = 0
    for _ in range(limit):
        if start == sorted_values.size:
            return False
        start = int(np.searchsorted(sorted_values, sorted_values[start], side="right"))
    return start < sorted_values.size


def category_counts(column: pa.ChunkedArray) -> dict[str, int]:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    counts = pc.value_counts(column.drop_null())
    return {str(v): int(c) for v, c in zip(counts.field("values").to_pylist(),
                                           counts.field("counts").to_pylist(), strict=True)}


def sorted_counts(values: np.ndarray) -> dict[str, int]:
    distinct, counts = np.unique(values, return_counts=True)
    return {format(v, "g"): int(c) for v, c in zip(distinct, counts, strict=True)}


def _null_rate(column: pa.ChunkedArray, non_null: int) -> float:
    return 1.0 - non_null / len(column) if len(column) else 0.0


def compare_column(config: DriftMonitor, name: str, role: str, reference: pa.ChunkedArray,
                   current: pa.ChunkedArray, reference_rows: int) -> ColumnResult:
    """The verdict of one column present in both datasets."""
    result = ColumnResult(name, role, NO_DRIFT, reference_type=str(reference.type),
                          current_type=str(current.type))
    ref_kind, cur_kind = kind_of(reference.type), kind_of(current.type)
    if ref_kind is None:
        result.verdict = INCONCLUSIVE
        result.reasons.append(f"type {reference.type} is not compared")
        return result
    if cur_kind != ref_kind:
        result.verdict, result.score, result.method = DRIFTED, SCHEMA_SCORE, "schema"
        result.reasons.append(f"retyped: {reference.type} -> {current.type}")
        return result

    if ref_kind == "numeric":
        ref_values, cur_values = numeric_values(reference), numeric_values(current)
        ref_n, cur_n = ref_values.size, cur_values.size
        kind = "numeric" if more_distinct_than(ref_values, FEW_DISTINCT_VALUES) else "categorical"
    else:
        ref_counts, cur_counts = category_counts(reference), category_counts(current)
        ref_n, cur_n = sum(ref_counts.values()), sum(cur_counts.values())
        kind = "categorical"
    result.kind, result.reference_rows, result.current_rows = kind, ref_n, cur_n
    result.reference_null_rate = _null_rate(reference, ref_n)
    result.current_null_rate = _null_rate(current, cur_n)
    null_shift = abs(result.current_null_rate - result.reference_null_rate)
    if null_shift > config.null_rate_change:
        result.reasons.append(f"null rate {result.reference_null_rate:.3f} -> "
                              f"{result.current_null_rate:.3f}")

    method, threshold = method_and_threshold(config, name, kind, reference_rows)
    result.method, result.threshold = method, threshold
    if method not in METHODS_FOR[kind]:
        result.verdict = INCONCLUSIVE
        result.reasons.append(f"method {method} does not apply to a {kind} column")
        return result
    if min(ref_n, cur_n) < config.min_rows:
        result.verdict = DRIFTED if null_shift > config.null_rate_change else INCONCLUSIVE
        result.reasons.append(f"too few values ({ref_n} reference, {cur_n} current; "
                              f"minRows {config.min_rows})")
        return result

    if kind == "numeric":
        numeric = stats.compare_numeric(ref_values, cur_values)
        scores = {"ks": numeric.ks_pvalue, "wasserstein": numeric.wasserstein_norm,
                  "psi": numeric.psi, "jensenShannon": numeric.jensen_shannon}
        result.statistics = {
            "ksStatistic": numeric.ks_statistic, "ksPValue": numeric.ks_pvalue,
            "wasserstein": numeric.wasserstein, "wassersteinNormed": numeric.wasserstein_norm,
            "psi": numeric.psi, "jensenShannon": numeric.jensen_shannon,
            "referenceMean": numeric.reference_mean, "currentMean": numeric.current_mean,
            "referenceStd": numeric.reference_std, "currentStd": numeric.current_std}
        result.histogram = {"type": "numeric", "edges": numeric.histogram_edges,
                            "reference": numeric.reference_histogram,
                            "current": numeric.current_histogram}
    else:
        if ref_kind == "numeric":
            ref_counts, cur_counts = sorted_counts(ref_values), sorted_counts(cur_values)
        categorical = stats.compare_categorical(ref_counts, cur_counts)
        scores = {"chiSquare": categorical.chi_square_pvalue, "psi": categorical.psi,
                  "jensenShannon": categorical.jensen_shannon}
        result.statistics = {
            "chiSquare": categorical.chi_square, "chiSquarePValue": categorical.chi_square_pvalue,
            "jensenShannon": categorical.jensen_shannon, "psi": categorical.psi,
            "newCategories": categorical.new_categories[:50],
            "newCategoryShare": categorical.new_category_share}
        result.histogram = {"type": "categorical", "categories": categorical.categories[:30],
                            "reference": categorical.reference_counts[:30],
                            "current": categorical.current_counts[:30]}
    result.score = float(scores[method])
    drifted = is_drift(method, result.score, threshold)
    if drifted:
        comparison = "<" if method in PVALUE_METHODS else ">="
        result.reasons.insert(0, f"{method} {result.score:.4g} {comparison} {threshold:g}")
    if drifted or null_shift > config.null_rate_change:
        result.verdict = DRIFTED
    return result


def default_workers() -> int:
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


def compare(reference, current, config: DriftMonitor, workers: int | None = None) -> dict:
    """Compare two datasets (objects with ``schema``, ``num_rows`` and ``read_column``); the
    result is the JSON report (see ``ferry.drift.report``)."""
    started = time.perf_counter()
    reference_rows, current_rows = reference.num_rows, current.num_rows
    ref_columns, cur_columns = list(reference.schema), set(current.schema)
    monitored = monitored_columns(config, ref_columns)
    predictions = [c for c in ref_columns if is_prediction(c) and c in cur_columns
                   and c not in monitored]
    reading = threading.Lock()  # one column read at a time; the statistics run in parallel

    def present(name: str, role: str) -> ColumnResult:
        with reading:
            ref, cur = reference.read_column(name), current.read_column(name)
        return compare_column(config, name, role, ref, cur, reference_rows)

    def column_result(name: str) -> ColumnResult:
        if name not in reference.schema:
            return ColumnResult(name, "feature", INCONCLUSIVE, reasons=["not in the reference data"])
        if name not in cur_columns:
            return ColumnResult(name, "feature", DRIFTED, method="schema", score=SCHEMA_SCORE,
                                reasons=["missing from current data"],
                                reference_type=str(reference.schema[name]))
        return present(name, "feature")

    # numpy's sorts, searches and cumulative sums release the GIL: columns in threads use every
    # core, and memory holds one column per worker.
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        results = list(pool.map(column_result, monitored))
        results += pool.map(lambda name: present(name, "prediction"), predictions)

    features = [r for r in results if r.role == "feature"]
    conclusive = [r for r in features if r.verdict != INCONCLUSIVE]
    drifted = [r for r in conclusive if r.verdict == DRIFTED]
    share = len(drifted) / len(conclusive) if conclusive else None
    if min(reference_rows, current_rows) < config.min_rows:
        verdict = INCONCLUSIVE
        message = (f"too few rows: {reference_rows} reference, {current_rows} current "
                   f"(minRows {config.min_rows})")
    elif not conclusive:
        verdict, message = INCONCLUSIVE, "no monitored column could be compared"
    else:
        verdict = DRIFTED if share >= config.drift_share else NO_DRIFT
        message = (f"{len(drifted)} of {len(conclusive)} monitored columns drifted "
                   f"(share {share:.2f}, threshold {config.drift_share:g})")
    unknown = sorted(c for c in cur_columns - set(ref_columns)
                     if not is_bookkeeping(c) and not is_prediction(c))
    return {
        "verdict": verdict,
        "message": message,
        "driftShare": share,
        "driftShareThreshold": config.drift_share,
        "featuresChecked": len(conclusive),
        # Inconclusive means "do not act": no drifted features are claimed then.
        "driftedFeatures": {} if verdict == INCONCLUSIVE else {r.name: r.score for r in drifted},
        "predictionDrift": {r.name: r.score for r in results
                            if r.role == "prediction" and r.verdict == DRIFTED},
        "reference": {"uri": reference.uri, "rows": reference_rows},
        "current": {"uri": current.uri, "rows": current_rows},
        "schema": {
            "missing": [r.name for r in features if "missing from current data" in r.reasons],
            "retyped": [r.name for r in results if r.method == "schema" and r.current_type],
            "unknown": unknown},
        "columns": [asdict(r) for r in results],
        "config": config.model_dump(by_alias=True, exclude_none=True,
                                    exclude={"on_drift", "schedule"}),
        "durationSeconds": round(time.perf_counter() - started, 3),
    }
