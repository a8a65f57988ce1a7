"""Parquet datasets read one column at a time, so memory holds one column, not the table.

A dataset is one or more Parquet files: a local file, directory or glob, or an ``s3://`` object,
prefix (ending in ``/``) or glob. S3 objects are streamed to a spool directory on disk first (boto3,
bounded memory) and then read like local files: Parquet is columnar, so reading one column touches
only that column's chunks. 1M rows x 50 float columns therefore need ~8 MB per column read, plus
the sorted copies the statistics make.
"""

from __future__ import annotations

import glob
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TIMESTAMP_COLUMN = "ferry_timestamp"


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def local_files(uri: str) -> list[Path]:
    path = Path(uri)
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if any(ch in uri for ch in "*?["):
        return sorted(Path(p) for p in glob.glob(uri, recursive=True))
    return [path]


def s3_objects(store, uri: str) -> list[str]:
    """A ``.parquet`` object itself, else every ``.parquet`` object under the prefix (a feature
    run's folder, with or without the trailing slash) or matching the glob."""
    if uri.endswith(".parquet") and "*" not in uri:
        return [uri]
    import fnmatch

    base = uri.split("*", 1)[0] if "*" in uri else uri.rstrip("/") + "/"
    found = sorted(o["uri"] for o in store.list(base) if o["uri"].endswith(".parquet"))
    return [u for u in found if "*" not in uri or fnmatch.fnmatchcase(u, uri)]


class ParquetDataset:
    """Parquet files seen as one table; columns are read, filtered and concatenated on demand.

    ``row_filters`` (one boolean mask per file, or None for all rows) restrict the rows, e.g. to a
    time window; a column missing from some files reads as nulls there.
    """

    def __init__(self, files: Iterable[str | Path], uri: str = "", spool=None) -> None:
        self.uri = uri
        self._spool = spool  # keeps a TemporaryDirectory alive as long as the dataset
        self.files = [pq.ParquetFile(str(f), memory_map=False) for f in files]
        if not self.files:
            raise FileNotFoundError(f"no Parquet files at {uri}")
        self.masks: list[np.ndarray | None] = [None] * len(self.files)
        self.schema: dict[str, pa.DataType] = {}
        for file in self.files:
            for field in file.schema_arrow:
                self.schema.setdefault(field.name, field.type)

    @classmethod
    def open(cls, uri: str, store=None, spool_dir: str | None = None) -> ParquetDataset:
        return cls.open_many([uri], uri, store, spool_dir)

    @classmethod
    def open_many(cls, uris: list[str], label: str, store=None,
                  spool_dir: str | None = None) -> ParquetDataset:
        """Local paths and/or S3 URIs (objects, prefixes or globs) as one dataset."""
        spool = None
        files: list[str | Path] = []
        for uri in uris:
            if not is_s3(uri):
                files += local_files(uri)
                continue
            if store is None:
                from ferry.adapters.s3 import ObjectStore

                store = ObjectStore()
            if spool is None:
                spool = tempfile.TemporaryDirectory(prefix="ferry-drift-", dir=spool_dir)
            for index, obj in enumerate(s3_objects(store, uri)):
                target = Path(spool.name) / f"{len(files)}-{index}.parquet"
                store.download(obj, target)
                files.append(target)
        return cls(files, label, spool)

    @property
    def num_rows(self) -> int:
        return sum(f.metadata.num_rows if m is None else int(m.sum())
                   for f, m in zip(self.files, self.masks, strict=True))

    def restrict_time(self, start: datetime, end: datetime, column: str = TIMESTAMP_COLUMN) -> None:
        """Keep the rows with ``start <= column < end`` (a timestamp column)."""
        low, high = (int(t.timestamp() * 1000) for t in (start, end))
        for index, file in enumerate(self.files):
            if column not in file.schema_arrow.names:
                self.masks[index] = np.zeros(file.metadata.num_rows, dtype=bool)
                continue
            values = file.read(columns=[column]).column(0)
            millis = pc.cast(values.cast(pa.timestamp("ms", tz="UTC")), pa.int64())
            millis = millis.to_numpy(zero_copy_only=False)
            self.masks[index] = (millis >= low) & (millis < high)

    def read_column(self, name: str) -> pa.ChunkedArray:
        """One column over all files, filtered; nulls where a file lacks it."""
        target = self.schema[name]
        chunks = []
        for file, mask in zip(self.files, self.masks, strict=True):
            if mask is not None and not mask.any():
                continue
            if name in file.schema_arrow.names:
                column = file.read(columns=[name]).column(0)
                if column.type != target:
                    column = _cast_or_null(column, target)
            else:
                column = pa.chunked_array([pa.nulls(file.metadata.num_rows, target)])
            chunks += (column.filter(pa.array(mask)) if mask is not None else column).chunks
        return pa.chunked_array(chunks, type=target)


def _cast_or_null(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.chunked_array([pa.nulls(len(column), target)])


def hour_partitions(start: datetime, end: datetime) -> list[str]:
    """``dt=YYYY-MM-DD-HH`` partitions of the prediction log that cover [start, end)."""
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    partitions = []
    while hour < end:
        partitions.append(hour.strftime("dt=%Y-%m-%d-%H"))
        hour += timedelta(hours=1)
    return partitions


def prediction_log_objects(store, prefix_uri: str, start: datetime, end: datetime) -> list[str]:
    """The log files of the hour partitions covering the window (rows are filtered later)."""
    prefix = prefix_uri.rstrip("/")
    found: list[str] = []
    for partition in hour_partitions(start, end):
        if is_s3(prefix):
            found += s3_objects(store, f"{prefix}/{partition}/")
        elif Path(prefix, partition).is_dir():
            found += [str(p) for p in local_files(str(Path(prefix, partition)))]
    return found


class TableDataset:
    """An in-memory Arrow table with the dataset interface (for callers that already hold data)."""

    def __init__(self, table: pa.Table, uri: str = "memory") -> None:
        self.table, self.uri = table, uri
        self.schema = {f.name: f.type for f in table.schema}

    @property
    def num_rows(self) -> int:
        return self.table.num_rows

    def read_column(self, name: str) -> pa.ChunkedArray:
        return self.table.column(name)
