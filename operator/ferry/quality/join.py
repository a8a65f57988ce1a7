"""Logged predictions joined with their labels: the rows every quality metric is computed from.

A prediction row (``ferry_prediction_id``, ``ferry_timestamp``) gets the label of the same id when
the label became known (its ``time``) no earlier than the prediction and at most ``window`` after
it. A label outside that window is ignored, as if it had not arrived: one known before the
prediction belongs to an earlier use of the id (or a clock problem), and one later than the window
is too late to say how this version did now. Either way the row counts as unlabelled, i.e. pending.
Labels must be one row per id (what ``labels.read_labels`` gives); a prediction id logged twice
gets the same label twice.

The join runs in DuckDB over the Arrow tables, so neither side is copied into Python objects.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.dataset

from ferry.api.common import Slice

PROBA = "ferry_proba_"
Rows = pa.Table | pyarrow.dataset.Dataset


def slice_column(name: str) -> str:
    """The boolean column of the joined table that says whether a row is in slice ``name``."""
    return f"slice:{name}"


def quoted(name: str) -> str:
    """A SQL identifier for any column name."""
    return '"' + name.replace('"', '""') + '"'


def slice_condition(spec: Slice) -> str:
    """A slice as a SQL expression that is true for its rows (NULL counts as outside)."""
    if spec.expression is not None:
        return f"coalesce(({spec.expression}), false)"
    values = ", ".join("'" + value.replace("'", "''") + "'" for value in spec.values)
    return f"coalesce(CAST({quoted(spec.column)} AS VARCHAR) IN ({values}), false)"


def join(predictions: Rows, labels: Rows, window_seconds: float,
         slices: Sequence[Slice] = (), keep: Sequence[str] = ()) -> pa.Table:
    """Prediction rows with their label, in no particular order: columns ``version``,
    ``timestamp``, ``prediction``, the ``ferry_proba_*`` columns, ``label`` (null when none arrived
    in the window), ``label_time``, one boolean ``slice:<name>`` per slice (evaluated on the
    prediction row's columns), and the columns named in ``keep`` (e.g. a business outcome), from
    the labels when they have them, else from the prediction row. Either input may be a
    ``pyarrow.dataset.Dataset`` (e.g. the log's Parquet objects on local disk): DuckDB then scans
    it in batches instead of holding it whole."""
    import duckdb

    extra = [c for c in labels.schema.names if c not in ("id", "label", "time")]
    proba = [c for c in predictions.schema.names if c.startswith(PROBA)]
    kept = []
    for name in keep:
        if name in extra:
            kept.append(f"l.{quoted(name)} AS {quoted(name)}")
        elif name in predictions.schema.names:
            kept.append(f"p.{quoted(name)} AS {quoted(name)}")
        else:
            raise ValueError(f"column {name!r} is in neither the prediction log nor the labels")
    columns = ["p.ferry_model_version AS version", "p.ferry_timestamp AS timestamp",
               "p.prediction AS prediction", *(f"p.{quoted(c)}" for c in proba),
               "l.label AS label", "l.time AS label_time",
               *(f"p.{quoted(slice_column(s.name))}" for s in slices), *kept]
    # Slices are evaluated in a subquery over the log alone, so their columns are the prediction
    # row's (``label`` in an expression is an input column of that name, never the label).
    flags = "".join(f", {slice_condition(s)} AS {quoted(slice_column(s.name))}" for s in slices)
    query = f"""
        SELECT {", ".join(columns)}
        FROM (SELECT *{flags} FROM predictions) AS p
        LEFT JOIN labels AS l
          ON l.id = p.ferry_prediction_id
         AND l.time >= p.ferry_timestamp
         AND l.time <= p.ferry_timestamp + to_microseconds({round(window_seconds * 1_000_000)})
    """
    connection = duckdb.connect(":memory:")
    try:
        connection.register("predictions", predictions)
        connection.register("labels", labels)
        # Order is not needed, and keeping it makes DuckDB hold more of the result at once.
        connection.execute("SET preserve_insertion_order = false")
        return connection.sql(query).to_arrow_table()
    finally:
        connection.close()


def coverage(joined: pa.Table, slices: Sequence[Slice] = ()) -> dict[str, dict]:
    """Label coverage per version, and per slice within it: ``{version: {"labelled", "total",
    "slices": {name: {"labelled", "total"}}}}``."""
    import duckdb

    counts = ["count(*) AS total", "count(label) AS labelled"]
    for spec in slices:
        flag = quoted(slice_column(spec.name))
        counts += [f"count(*) FILTER ({flag}) AS {quoted('t:' + spec.name)}",
                   f"count(label) FILTER ({flag}) AS {quoted('l:' + spec.name)}"]
    connection = duckdb.connect(":memory:")
    try:
        connection.register("joined", joined)
        rows = connection.execute(f"SELECT version, {', '.join(counts)} FROM joined GROUP BY version "
                                  "ORDER BY version").fetchall()
    finally:
        connection.close()
    result = {}
    for version, total, labelled, *per_slice in rows:
        result[version] = {"total": total, "labelled": labelled, "slices": {
            spec.name: {"total": per_slice[2 * i], "labelled": per_slice[2 * i + 1]}
            for i, spec in enumerate(slices)}}
    return result
