"""Prediction logging for drift monitoring: sampled requests (inputs + outputs) to S3 as Parquet.

The request path only appends references to a bounded in-memory buffer (``offer``); a background
thread turns them into Arrow tables and writes one Parquet object per flush and input schema, when
``batch_rows`` rows are buffered or every ``flush_seconds``, and once more at shutdown. A full
buffer or a failed write drops rows and counts them; it never blocks or fails a request.

Layout (read by the drift engine)::

    <prefix>/dt=YYYY-MM-DD-HH/<version>-<hostname>-<unixms>-<seq>.parquet

Columns: the request's input columns (names and types as sent, less the id column),
``prediction`` or ``prediction_<name>`` per output column, ``ferry_model_version`` (string),
``ferry_timestamp`` (timestamp[ms, UTC], when the prediction was made), ``ferry_prediction_id``
(string, see ``ids``; what labels join on) and, for classifiers whose ``predict_proba`` is known
(``model.Probabilities``), ``ferry_proba_<class>`` (float64) per class. ``dt`` is the hour of the
file's first row. Files written before ids existed lack the last two kinds of columns; readers
see nulls there (``ferry_*`` columns are bookkeeping to the drift monitor either way).
Probabilities are computed in the log's thread, for the sampled rows only, so the request path
never pays for them; rows whose probabilities fail are logged without them.
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
from typing import Any, NamedTuple

import numpy as np

from ferry.serving.batching import predict_all
from ferry.serving.ids import generate
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


def log_table(frame: Frame, output: Any, version: str, timestamp_ms: int, ids: list[str] | None = None,
              probabilities: np.ndarray | None = None, classes: tuple[str, ...] = ()):
    """One request's rows as an Arrow table with the contract's columns (ids generated when the
    caller has none)."""
    import pyarrow as pa

    names, arrays = [], []
    for name, values in input_columns(frame) + output_columns(output):
        names.append(name)
        arrays.append(pa.Array.from_pandas(values) if hasattr(values, "iloc") else _arrow(values))
    names += ["ferry_model_version", "ferry_timestamp", "ferry_prediction_id"]
    arrays += [pa.array(np.full(frame.rows, version, dtype=object), pa.string()),
               pa.array(np.full(frame.rows, timestamp_ms, dtype=np.int64), pa.timestamp("ms", tz="UTC")),
               pa.array(ids if ids is not None else generate(frame.rows), pa.string())]
    if probabilities is not None:
        names += [f"ferry_proba_{label}" for label in classes]
        arrays += [pa.array(probabilities[:, index]) for index in range(len(classes))]
    return pa.Table.from_arrays(arrays, names=names)


def _arrow(values: np.ndarray):
    import pyarrow as pa

    if values.dtype == object:
        return pa.array(values.tolist())
    return pa.array(values)


class Entry(NamedTuple):
    """One sampled request in the buffer."""

    frame: Frame
    output: Any
    timestamp_ms: int
    ids: list[str] | None = None


def combine(entries: list[Entry], version: str, probabilities=None) -> list:
    """Buffered entries → one table per distinct schema, in order. ``probabilities``: a
    ``model.Probabilities``, asked once per group of compatible frames (as the batcher does)."""
    import pyarrow as pa

    scores: list = [None] * len(entries)
    if probabilities is not None:
        outcomes = predict_all(probabilities.of, [entry.frame for entry in entries])
        failed = sum(entry.frame.rows for entry, o in zip(entries, outcomes, strict=True) if o.error)
        if failed:
            log.warning("prediction log: no class probabilities for %d rows: %s", failed,
                        next(o.error for o in outcomes if o.error))
        scores = [outcome.output for outcome in outcomes]
    classes = probabilities.classes if probabilities is not None else ()
    by_schema: dict = {}
    for entry, score in zip(entries, scores, strict=True):
        table = log_table(entry.frame, entry.output, version, entry.timestamp_ms, entry.ids, score, classes)
        by_schema.setdefault(table.schema, []).append(table)
    return [pa.concat_tables(tables) for tables in by_schema.values()]


class PredictionLog:
    """The bounded buffer and its flushing thread. ``offer`` is called on the event loop;
    ``probabilities`` is set once the model is loaded (a ``model.Probabilities`` or None)."""

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
        self.probabilities = None
        self._entries: deque = deque()
        self._rows = 0
        self._seq = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="prediction-log", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def offer(self, frame: Frame, output: Any, ids: list[str] | None = None) -> bool:
        """Sample this request; buffer its rows (with their prediction ids) or count them dropped.
        Never blocks for I/O."""
        if not self.sampler.take():
            return False
        with self._lock:
            if self._rows + frame.rows > self.max_rows:
                dropped = True
            else:
                dropped = False
                self._entries.append(Entry(frame, output, int(time.time() * 1000), ids))
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
            tables = combine(entries, self.version, self.probabilities)
        except Exception as error:  # noqa: BLE001 - e.g. values Arrow cannot type; serving goes on
            rows = sum(entry.frame.rows for entry in entries)
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
