"""CBPE estimates realized metrics from calibrated probabilities, and misses concept drift."""

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pytest
from sklearn import metrics as sk

from ferry.api.common import Slice
from ferry.quality.estimate import estimated
from ferry.quality.join import join
from ferry.quality.summary import summarize

TOLERANCE = 0.02


def world(seed: int, n: int, drift: float = 0.0):
    """Scores from a calibrated model; ``drift`` shifts P(y | x) away from what the model learnt."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    p = 1 / (1 + np.exp(-2 * x))
    truth = 1 / (1 + np.exp(-2 * (x - drift)))
    y = (rng.random(n) < truth).astype(int)
    return p, (p > 0.5).astype(int), y


def realized(p, yhat, y):
    return {"accuracy": sk.accuracy_score(y, yhat), "precision": sk.precision_score(y, yhat),
            "recall": sk.recall_score(y, yhat), "f1": sk.f1_score(y, yhat), "rocAuc": sk.roc_auc_score(y, p)}


def test_without_concept_drift_the_estimate_is_within_tolerance():
    p, yhat, y = world(1, 100_000)
    estimate = estimated(yhat, p, 1).values
    assert estimate == pytest.approx(realized(p, yhat, y), abs=TOLERANCE)


def test_expected_auc_is_the_weighted_auc():
    p, yhat, _ = world(2, 2000)
    weighted = sk.roc_auc_score(np.r_[np.ones(p.size), np.zeros(p.size)], np.r_[p, p],
                                sample_weight=np.r_[p, 1 - p])
    assert estimated(yhat, p, 1).values["rocAuc"] == pytest.approx(weighted, abs=1e-9)


def test_concept_drift_is_the_known_limitation():
    """P(y | x) moved: the probabilities, hence the estimate, still say the old accuracy."""
    p, yhat, y = world(3, 100_000, drift=1.5)
    estimate, truth = estimated(yhat, p, 1).values, realized(p, yhat, y)
    assert abs(estimate["accuracy"] - truth["accuracy"]) > 0.1
    assert abs(estimate["precision"] - truth["precision"]) > 0.1


def test_summary_per_version_and_capped_slices():
    n = 4000
    p, yhat, y = world(4, n)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    log = pa.table({"segment": np.arange(n) % 3, "prediction": yhat,
                    "ferry_model_version": np.where(np.arange(n) < n // 2, "1", "2"),
                    "ferry_timestamp": pa.array([t0] * n, pa.timestamp("ms", tz="UTC")),
                    "ferry_prediction_id": [str(i) for i in range(n)], "ferry_proba_0": 1 - p,
                    "ferry_proba_1": p, "value": np.arange(n, dtype=float)})
    known = np.arange(n) % 2 == 0
    labels = pa.table({"id": [str(i) for i in np.flatnonzero(known)], "label": y[known],
                       "time": pa.array([t0] * int(known.sum()), pa.timestamp("ms", tz="UTC"))})
    slices = [Slice(name=f"s{k}", column="segment", values=[str(k)]) for k in range(3)]
    joined = join(log, labels, 86400, slices, keep=["value"])
    summary = summarize(joined, slices, outcome="value", max_slices=2)
    assert summary["task"] == "classification"
    first = summary["versions"][0]
    assert first["version"] == "1"
    assert first["coverage"] == {"labelled": n // 4, "total": n // 2, "ratio": 0.5}
    rows = np.arange(n) < n // 2
    mask = rows & known
    assert first["realized"]["metrics"]["accuracy"] == pytest.approx(sk.accuracy_score(y[mask], yhat[mask]))
    assert first["estimated"]["estimated"] is True and first["estimated"]["rows"] == n // 4
    assert first["business"]["mean"] == pytest.approx(np.arange(n)[mask].mean())
    assert [s["name"] for s in first["slices"]] == ["s0", "s1"] and first["slicesOmitted"] == 1
    in_s1 = mask & (np.arange(n) % 3 == 1)
    f1 = first["slices"][1]["realized"]["metrics"]["f1"]
    assert f1 == pytest.approx(sk.f1_score(y[in_s1], yhat[in_s1]))
    assert all(key == key[0].lower() + key[1:] and "_" not in key for key in _keys(summary))


def _keys(value):
    if isinstance(value, dict):
        for key, inner in value.items():
            yield key
            yield from _keys(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _keys(inner)


def test_summary_of_a_regressor_has_realized_errors_and_no_estimate():
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    log = pa.table({"prediction": [1.0, 2.0, 4.0], "ferry_model_version": ["1"] * 3,
                    "ferry_timestamp": pa.array([t0] * 3, pa.timestamp("ms", tz="UTC")),
                    "ferry_prediction_id": ["a", "b", "c"]})
    labels = pa.table({"id": ["a", "b"], "label": [2.0, 2.0],
                       "time": pa.array([t0] * 2, pa.timestamp("ms", tz="UTC"))})
    version = summarize(join(log, labels, 60))["versions"][0]
    assert version["realized"]["metrics"] == pytest.approx({"mae": 0.5, "rmse": np.sqrt(0.5), "mape": 0.25})
    assert "estimated" not in version and version["coverage"]["labelled"] == 2
