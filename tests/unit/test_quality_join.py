"""The join keeps a label only inside its window and evaluates slices on the prediction row."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest

from ferry.api.common import Slice
from ferry.quality.join import coverage, join, slice_column

T0 = datetime(2026, 11, 1, tzinfo=UTC)
TIME = pa.timestamp("ms", tz="UTC")


def predictions():
    return pa.table({
        "country": ["de", "fr", "de", "it", "de"], "amount": [10.0, 200.0, 300.0, 5.0, None],
        "prediction": [1, 0, 1, 0, 1], "ferry_model_version": ["1", "1", "2", "2", "2"],
        "ferry_timestamp": pa.array([T0] * 5, TIME), "ferry_prediction_id": ["a", "b", "c", "d", "e"],
        "ferry_proba_0": [0.2, 0.9, 0.4, 0.7, 0.1], "ferry_proba_1": [0.8, 0.1, 0.6, 0.3, 0.9]})


def labels():
    day = timedelta(days=1)
    return pa.table({"id": ["a", "b", "c", "d", "zz"], "label": [1, 1, 0, 0, 1],
                     "time": pa.array([T0 + 2 * day, T0, T0 - timedelta(seconds=1), T0 + 8 * day, T0], TIME),
                     "revenue": [3.0, 4.0, 5.0, 6.0, 7.0]})


SLICES = [Slice(name="de", column="country", values=["de"]),
          Slice(name="big", expression="amount > 100")]


def test_labels_outside_the_window_or_before_the_prediction_are_ignored():
    joined = join(predictions(), labels(), timedelta(days=7).total_seconds(), SLICES, keep=["revenue"])
    ids = dict(zip([0.8, 0.1, 0.6, 0.3, 0.9], "abcde", strict=True))  # ferry_proba_1 tells rows apart
    rows = {ids[r["ferry_proba_1"]]: r for r in joined.to_pylist()}
    # a: 2 days late, in; b: at the prediction's time, in; c: before it, out; d: 8 days, out; e: none
    assert {i: r["label"] for i, r in rows.items()} == {"a": 1, "b": 1, "c": None, "d": None, "e": None}
    assert rows["a"]["revenue"] == 3.0 and rows["c"]["revenue"] is None
    assert set(joined.column_names) >= {"version", "timestamp", "prediction", "ferry_proba_1", "label",
                                        "label_time", slice_column("de"), slice_column("big")}
    assert joined.column(slice_column("de")).to_pylist().count(True) == 3
    assert joined.column(slice_column("big")).to_pylist().count(True) == 2  # a null amount is outside


def test_coverage_per_version_and_slice():
    joined = join(predictions(), labels(), timedelta(days=7).total_seconds(), SLICES)
    result = coverage(joined, SLICES)
    assert result["1"] == {"total": 2, "labelled": 2, "slices": {"de": {"total": 1, "labelled": 1},
                                                               "big": {"total": 1, "labelled": 1}}}
    assert result["2"]["total"] == 3 and result["2"]["labelled"] == 0


def test_an_unknown_kept_column_is_an_error():
    with pytest.raises(ValueError, match="neither"):
        join(predictions(), labels(), 60, keep=["nope"])


def test_slice_needs_exactly_one_of_values_and_expression():
    with pytest.raises(ValueError, match="exactly one"):
        Slice(name="x", column="c", values=["a"], expression="true")
    with pytest.raises(ValueError, match="together"):
        Slice(name="x", expression="true", column="c")
    assert Slice.model_validate({"name": "x", "expression": "a > 1"}).expression == "a > 1"


def test_a_dataset_joins_as_its_table(tmp_path):
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    pq.write_table(predictions(), tmp_path / "log.parquet")
    scanned = join(ds.dataset(tmp_path / "log.parquet"), labels(), 7 * 86400, SLICES)
    whole = join(predictions(), labels(), 7 * 86400, SLICES)
    key = [("ferry_proba_1", "ascending")]
    assert scanned.sort_by(key).to_pylist() == whole.sort_by(key).to_pylist()
