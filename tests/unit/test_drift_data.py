"""Reading datasets column by column: several files, missing columns, the prediction log's hour
partitions and its time window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ferry.drift.data import ParquetDataset, hour_partitions, prediction_log_objects

T0 = datetime(2026, 11, 22, 9, 40, tzinfo=UTC)


def log_table(start: datetime, rows: int, step: timedelta, **extra) -> pa.Table:
    times = [start + i * step for i in range(rows)]
    return pa.table({"amount": np.arange(rows, dtype=float), "prediction": np.zeros(rows),
                     "ferry_model_version": ["3"] * rows,
                     "ferry_timestamp": pa.array(times, pa.timestamp("ms", tz="UTC")), **extra})


def test_hour_partitions_cover_the_window():
    assert hour_partitions(T0, T0 + timedelta(hours=1)) == ["dt=2026-11-22-09",
                                                            "dt=2026-11-22-10"]
    assert hour_partitions(T0.replace(minute=0), T0.replace(minute=0) + timedelta(hours=1)) == [
        "dt=2026-11-22-09"]


def test_prediction_log_window_selects_partitions_then_rows(tmp_path):
    for hour in (8, 9, 10):
        folder = tmp_path / f"dt=2026-11-22-{hour:02d}"
        folder.mkdir()
        start = T0.replace(hour=hour, minute=0)
        pq.write_table(log_table(start, 60, timedelta(minutes=1)),
                       folder / f"3-host-{int(start.timestamp() * 1000)}-0.parquet")
    start, end = T0, T0 + timedelta(hours=1)  # 09:40 .. 10:40
    files = prediction_log_objects(None, str(tmp_path), start, end)
    assert [f.split("/")[-2] for f in files] == ["dt=2026-11-22-09", "dt=2026-11-22-10"]
    dataset = ParquetDataset.open_many(files, str(tmp_path))
    assert dataset.num_rows == 120
    dataset.restrict_time(start, end)
    assert dataset.num_rows == 60  # 20 minutes of hour 9, 40 of hour 10
    amounts = dataset.read_column("amount").to_numpy()
    assert amounts.tolist() == list(range(40, 60)) + list(range(40))


def test_column_missing_in_one_file_reads_as_nulls(tmp_path):
    pq.write_table(pa.table({"a": [1.0, 2.0], "b": ["x", "y"]}), tmp_path / "0.parquet")
    pq.write_table(pa.table({"a": [3, 4, 5]}), tmp_path / "1.parquet")
    dataset = ParquetDataset.open(str(tmp_path))
    assert dataset.num_rows == 5 and set(dataset.schema) == {"a", "b"}
    assert dataset.read_column("a").to_pylist() == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert dataset.read_column("b").to_pylist() == ["x", "y", None, None, None]


def test_file_without_timestamps_contributes_no_rows_to_a_window(tmp_path):
    pq.write_table(pa.table({"a": [1.0]}), tmp_path / "old.parquet")
    dataset = ParquetDataset.open(str(tmp_path / "old.parquet"))
    dataset.restrict_time(T0, T0 + timedelta(hours=1))
    assert dataset.num_rows == 0
    assert dataset.read_column("a").to_pylist() == []
