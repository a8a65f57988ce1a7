"""Labels (the true outcomes of served predictions), read from where they are collected.

Layout: ``<prediction-log-uri>/labels/`` (``layout.labels_uri``), next to the ``dt=`` partitions of the
same InferenceService's prediction log, so the drift monitor, which reads only those partitions,
never sees them. Two writers:

- ``POST /v2/models/{name}/feedback`` on ``ferry serve`` writes one Parquet object per accepted
  batch, ``labels/dt=YYYY-MM-DD-HH/feedback-<hostname>-<unixms>-<seq>.parquet``;
- users drop files at any depth under the prefix: names ending ``.parquet`` or ``.csv`` (a header
  row), with columns ``id``, ``label`` and optionally ``time``; other files are ignored, and
  so are other columns unless the caller keeps them (the quality monitor's ``outcome``).

``read_labels`` turns all of them into one table, the one the quality monitor joins on the
prediction log's ``ferry_prediction_id``: ``id`` (string), ``label`` (the files' type; when the
files disagree, e.g. integers in one and strings in another, every label becomes a string) and
``time`` (timestamp[ms, UTC], when the label became known: a file without the column, or a row
with a null, gets the object's last-modified time; a time without a zone is UTC). One row per id:
the latest time wins; on equal times the later object in key order, then the later row. A file
that lacks ``id`` or ``label``, has a null in either, or a time that cannot be read raises
``LabelFileError`` naming the file, row and column: a bad file is reported, never half-read.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

SUFFIXES = (".parquet", ".csv")
TIME = pa.timestamp("ms", tz="UTC")


class LabelFileError(ValueError):
    """A label file cannot be read as labels; the message names the file and the problem."""


@dataclass(frozen=True)
class LabelObject:
    """One label file: its name (URI or path), last-modified time and contents."""

    name: str
    modified: datetime
    data: bytes


def read_labels(uri: str, store=None, keep: tuple[str, ...] = ()) -> pa.Table:
    """Every label file under ``uri`` (an ``s3://`` prefix or a local folder), merged; ``keep``
    names extra columns to carry along (a business outcome), null where a file lacks them."""
    return latest([normalize(parse(item), item.name, item.modified, keep)
                   for item in list_objects(uri, store)], keep)


def list_objects(uri: str, store=None) -> list[LabelObject]:
    """The label files under ``uri``, in key order (S3 with ``store``, else a local folder)."""
    if uri.startswith("s3://"):
        if store is None:
            from ferry.adapters.s3 import ObjectStore

            store = ObjectStore()
        found = sorted((o for o in store.list(uri.rstrip("/") + "/") if o["uri"].endswith(SUFFIXES)),
                       key=lambda o: o["uri"])
        return [LabelObject(o["uri"], o["modified"], store.get_bytes(o["uri"]) or b"") for o in found]
    root = Path(uri)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)) \
        if root.is_dir() else []
    return [LabelObject(str(p), datetime.fromtimestamp(p.stat().st_mtime, tz=UTC), p.read_bytes())
            for p in files]


def parse(item: LabelObject) -> pa.Table:
    """A label file's table as stored (ids of a CSV stay text, so leading zeros survive; an empty
    CSV cell is a null)."""
    buffer = io.BytesIO(item.data)
    try:
        if item.name.endswith(".parquet"):
            return pq.read_table(buffer)
        return pacsv.read_csv(buffer, convert_options=pacsv.ConvertOptions(
            column_types={"id": pa.string()}, strings_can_be_null=True))
    except (pa.ArrowInvalid, OSError) as error:
        raise LabelFileError(f"{item.name}: not a readable {Path(item.name).suffix[1:]} file: {error}") \
            from None


def normalize(table: pa.Table, name: str, modified: datetime, keep: tuple[str, ...] = ()) -> pa.Table:
    """A file's labels as the columns id (string), label, time (ms, UTC), then ``keep``."""
    for column in ("id", "label"):
        if column not in table.column_names:
            raise LabelFileError(f"{name}: no column {column!r} (found: {', '.join(table.column_names)})")
        nulls = table.column(column).is_null()
        if pc.any(nulls).as_py():
            raise LabelFileError(f"{name}: row {_first(nulls)} has no {column}")
    ids = table.column("id")
    if not pa.types.is_string(ids.type):
        if not (pa.types.is_integer(ids.type) or pa.types.is_large_string(ids.type)):
            raise LabelFileError(f"{name}: column 'id' must hold strings or integers, not {ids.type}")
        ids = ids.cast(pa.string())
    fallback = pa.scalar(int(modified.timestamp() * 1000), TIME)
    if "time" in table.column_names:
        times = pc.fill_null(_times(table.column("time"), name), fallback)
    else:
        times = pa.chunked_array([pa.array(np.full(table.num_rows, fallback.value), TIME)])
    extra = {column: table.column(column) if column in table.column_names else pa.nulls(table.num_rows)
             for column in keep}
    return pa.table({"id": ids, "label": table.column("label"), "time": times, **extra})


def _times(column: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    if pa.types.is_timestamp(column.type):
        return column.cast(TIME) if column.type.tz else pc.assume_timezone(column, "UTC").cast(TIME)
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        raise LabelFileError(f"{name}: column 'time' must hold timestamps or RFC 3339 text, not "
                             f"{column.type}")
    try:
        return column.cast(TIME)
    except pa.ArrowInvalid:
        pass
    try:
        return pc.assume_timezone(column.cast(pa.timestamp("ms")), "UTC")
    except pa.ArrowInvalid as error:
        raise LabelFileError(f"{name}: column 'time' has a value that is not a time: {error}") from None


def _first(mask: pa.ChunkedArray) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def latest(tables: list[pa.Table], keep: tuple[str, ...] = ()) -> pa.Table:
    """Normalized tables (in key order) → one row per id, the latest time winning."""
    if not tables:
        return pa.table({"id": pa.array([], pa.string()), "label": pa.array([], pa.null()),
                         "time": pa.array([], TIME), **{c: pa.array([], pa.null()) for c in keep}})
    try:
        merged = pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        merged = pa.concat_tables([t.set_column(1, "label", t.column("label").cast(pa.string()))
                                   for t in tables])
    merged = merged.append_column("order", pa.array(np.arange(merged.num_rows)))
    ordered = merged.take(pc.sort_indices(merged, [("id", "ascending"), ("time", "ascending"),
                                                   ("order", "ascending")]))
    ids = ordered.column("id").to_numpy(zero_copy_only=False)
    last = np.ones(len(ids), dtype=bool)
    last[:-1] = ids[:-1] != ids[1:]
    return ordered.filter(pa.array(last)).drop_columns(["order"])
