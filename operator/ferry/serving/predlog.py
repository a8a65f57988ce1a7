"""Prediction logging for drift monitoring: sampled requests (inputs + outputs) to S3 as Parquet.

The request path only appends references to a bounded in-memory buffer (``offer``); a background
thread turns them into Arrow tables and writes one Parquet object per flush and input schema, when
``batch_rows`` rows are buffered or every ``flush_seconds``, and once more at shutdown. A full
buffer or a failed write drops rows and counts them; it never blocks or fails a request.

Layout (read by the drift engine)::

    <prefix>/dt=YYYY-MM-DD-HH/<version>-<hostname>-<unixms>-<seq>.parquet

Columns: the request's input columns (names and types as sent), ``prediction`` or
``prediction_<name>`` per output column, ``ferry_model_version`` (string) and ``ferry_timestamp``
(timestamp[ms, UTC], when the prediction was made). ``dt`` is the hour of the file's first row.
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np

from ferry.serving.outputs import output_columns
from ferry.serving.payload import Frame
from ferry.serving.sampling import Sampler

log = logging.getLogger(__name__)


def object_key(prefix: str, version: str, hostname: str, timestamp_ms: int, seq: int) -> str:
    """The object key (without bucket) of one Parquet file; ``prefix`` has no trailing slash."""
    hour = datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC).strftime("%Y-%m-%d-%H")
    name = f"{_safe(version)}-{_safe(hostname)}-{timestamp_ms}-{seq}.parquet"
    return f"{prefix}/dt={hour}/{name}" if prefix else f"dt={hour}/{name}"


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text) or "_"


def input_columns(frame: Frame) -> list[tuple[str, Any]]:
    """The request's input as named columns (numpy arrays or pandas Series), names as sent."""
    if frame.kind == "block":
        return [(name, frame.data[:, index]) for index, name in enumerate(frame.columns)]
    if frame.kind == "frame":
        return [(str(name), frame.data[name]) for name in frame.data.columns]
    array = frame.data.reshape(frame.rows, -1)
    return [(f"input_{index}", array[:, index]) for index in range(array.shape[1])]


def log_table(frame: Frame, output: Any, version: str, timestamp_ms: int):
    """One request's rows as an Arrow table with the contract's columns."""
    import pyarrow as pa

    names, arrays = [], []
    for name, values in input_columns(frame) + output_columns(output):
        names.append(name)
        arrays.append(pa.Array.from_pandas(values) if hasattr(values, "iloc") else _arrow(values))
    names += ["ferry_model_version", "ferry_timestamp"]
    arrays += [pa.array(np.full(frame.rows, version, dtype=object), pa.string()),
               pa.array(np.full(frame.rows, timestamp_ms, dtype=np.int64), pa.timestamp("ms", tz="UTC"))]
    return pa.Table.from_arrays(arrays, names=names)


def _arrow(values: np.ndarray):
    import pyarrow as pa

    if values.dtype == object:
        return pa.array(values.tolist())
    return pa.array(values)


def combine(entries: list[tuple[Frame, Any, int]], version: str) -> list:
    """Buffered (frame, output, timestamp) entries → one table per distinct schema, in order."""
    import pyarrow as pa

    by_schema: dict = {}
    for frame, output, timestamp_ms in entries:
        table = log_table(frame, output, version, timestamp_ms)
        by_schema.setdefault(table.schema, []).append(table)
    return [pa.concat_tables(tables) for tables in by_schema.values()]


class PredictionLog:
    """The bounded buffer and its flushing thread. ``offer`` is called on the event loop."""

    def __init__(self, uri: str, version: str, hostname: str, *, sample_rate: float,
                 batch_rows: int, flush_seconds: float, max_rows: int,
                 on_written: Callable[[int], None], on_dropped: Callable[[int], None],
                 store=None) -> None:
        from ferry.adapters.s3 import split

        self.bucket, prefix = split(uri + "/")
        self.prefix = prefix.strip("/")
        self.version, self.hostname = version, hostname
        self.sampler = Sampler(sample_rate)
        self.batch_rows, self.flush_seconds, self.max_rows = batch_rows, flush_seconds, max_rows
        self._on_written, self._on_dropped = on_written, on_dropped
        self._store = store
        self._entries: deque = deque()
        self._rows = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, frame: Frame, output: Any) -> bool:
        """Sample this request; buffer its rows or count them dropped. Never blocks for I/O."""
        if not self.sampler.take():
            return False
        with self._lock:
            if self._rows + frame.rows > self.max_rows:
                dropped = True
            else:
                dropped = False
                self._entries.append((frame, output, int(time.time() * 1000)))
                self._rows += frame.rows
                full = self._rows >= self.batch_rows
        if dropped:
            self._on_dropped(frame.rows)
            return False
        if full:
            self._wake.set()
        return True

    def close(self, timeout: float = 60) -> None:
        """Stop the thread after a last flush of everything buffered."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self.flush()
            if self._stopping:
                self.flush()
                return

    def flush(self) -> int:
        """Write what is buffered now; returns the rows written."""
        with self._lock:
            entries = list(self._entries)
            self._entries.clear()
            self._rows = 0
        if not entries:
            return 0
        try:
            tables = combine(entries, self.version)
        except Exception as error:  # noqa: BLE001 - e.g. values Arrow cannot type; serving goes on
            rows = sum(frame.rows for frame, _, _ in entries)
            log.warning("prediction log could not convert %d rows: %s", rows, error)
            self._on_dropped(rows)
            return 0
        written = 0
        for table in tables:
            first_ms = int(table.column("ferry_timestamp")[0].value)
            self._seq += 1
            key = object_key(self.prefix, self.version, self.hostname, first_ms, self._seq)
            try:
                self._put(key, table)
            except Exception as error:  # noqa: BLE001 - a logging outage never affects serving
                log.warning("prediction log write of %d rows to s3://%s/%s failed: %s",
                            table.num_rows, self.bucket, key, error)
                self._on_dropped(table.num_rows)
                continue
            written += table.num_rows
            self._on_written(table.num_rows)
        return written

    def _put(self, key: str, table) -> None:
        import pyarrow.parquet as pq

        if self._store is None:
            from ferry.serving.model import s3_store

            self._store = s3_store()
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self._store.put_bytes(f"s3://{self.bucket}/{key}", buffer.getvalue())
