"""Point-in-time joins (pure): the training set of a FeaturePipeline's ``transform.pointInTime``.

Every row of the entity/label frame gets, per feature source, the latest value whose timestamp is
at or before the row's event time (``ASOF LEFT JOIN ... ON keys AND event_time >= timestamp``): a
value stamped after the event can never leak into the row. A value older than the source's TTL at
the event time is NULL, as is a feature no value is known for; the row itself is always kept, in the
frame's order. Identifiers are quoted and TTLs are bound as variables: no spec value is pasted
into the SQL as text.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from ferry.api.common import duration_seconds
from ferry.features import engine

ENTITIES = "entities"
ROW = "__ferry_row"
TIME = "__ferry_time"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def feature_table(index: int) -> str:
    """The name feature source ``index`` is registered under (never a name from the spec)."""
    return f"feature_{index}"


@dataclass(frozen=True)
class Source:
    table: str
    timestamp: str
    columns: tuple[str, ...]
    ttl_microseconds: int | None


def _sources(spec: dict, schemas: dict[str, pa.Schema]) -> list[Source]:
    keys = spec["entities"]["entityKey"]
    sources = []
    for index, feature in enumerate(spec["features"]):
        table, names = feature_table(index), schemas[feature_table(index)].names
        needed = [*keys, feature["timestamp"], *feature.get("columns", [])]
        if missing := [n for n in needed if n not in names]:
            raise ValueError(f"feature source {index} has no column(s) {missing}; it has {names}")
        columns = feature.get("columns") or [n for n in names
                                             if n not in keys and n != feature["timestamp"]]
        ttl = feature.get("ttl") or spec.get("ttl")
        sources.append(Source(table, feature["timestamp"], tuple(columns),
                              None if ttl is None else round(duration_seconds(ttl) * 1_000_000)))
    return sources


def _spine(spec: dict) -> list[str]:
    entities = spec["entities"]
    return [*entities["entityKey"], entities["eventTime"], *filter(None, [entities.get("label")])]


def _check(spec: dict, schemas: dict[str, pa.Schema], sources: list[Source]) -> None:
    """Refuse what would make a wrong set silently: clashing names, an event time compared with a
    timestamp of the other kind (naive vs. zoned would be read in the session's time zone)."""
    names = _spine(spec) + [c for s in sources for c in s.columns]
    if clashes := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"output columns {clashes} come from more than one place; "
                         "choose the features' columns")
    entities = schemas[ENTITIES]
    if missing := [n for n in _spine(spec) if n not in entities.names]:
        raise ValueError(f"the entity frame has no column(s) {missing}; it has {entities.names}")
    event = entities.field(spec["entities"]["eventTime"]).type
    for source in sources:
        stamp = schemas[source.table].field(source.timestamp).type
        zoned = [pa.types.is_timestamp(t) and t.tz is not None for t in (event, stamp)]
        if zoned[0] != zoned[1]:
            raise ValueError(f"{source.table}.{source.timestamp} is {stamp} but the event time is "
                             f"{event}: give both a time zone or neither")


def query(spec: dict, schemas: dict[str, pa.Schema]) -> tuple[str, dict[str, int]]:
    """(SQL, variables) of the join over ``entities`` (with a ``__ferry_row`` order column) and the
    ``feature_<i>`` tables; ``spec`` is ``transform.pointInTime`` as in the spec (camelCase)."""
    sources = _sources(spec, schemas)
    _check(spec, schemas, sources)
    keys, event = spec["entities"]["entityKey"], quote(spec["entities"]["eventTime"])
    ctes, joins, variables = [], [], {}
    select = [f"e.{quote(n)}" for n in _spine(spec)]
    for index, source in enumerate(sources):
        alias = f"j{index}"
        on = " AND ".join([f"e.{quote(k)} = f.{quote(k)}" for k in keys]
                          + [f"e.{event} >= f.{quote(source.timestamp)}"])
        taken = ", ".join(f"f.{quote(c)}" for c in source.columns)
        ctes.append(f"{alias} AS (SELECT e.{ROW}, f.{quote(source.timestamp)} AS {TIME}"
                    f"{', ' + taken if taken else ''} FROM {ENTITIES} e "
                    f"ASOF LEFT JOIN {source.table} f ON {on})")
        joins.append(f"LEFT JOIN {alias} ON {alias}.{ROW} = e.{ROW}")
        fresh = None
        if source.ttl_microseconds is not None:
            variable = f"ferry_ttl_{index}"
            variables[variable] = source.ttl_microseconds
            fresh = f"{alias}.{TIME} >= e.{event} - to_microseconds(getvariable('{variable}'))"
        for column in source.columns:
            value = f"{alias}.{quote(column)}"
            select.append(f"CASE WHEN {fresh} THEN {value} END AS {quote(column)}" if fresh
                          else f"{value} AS {quote(column)}")
    sql = (f"WITH {', '.join(ctes)} SELECT {', '.join(select)} FROM {ENTITIES} e "
           f"{' '.join(joins)} ORDER BY e.{ROW}")
    return sql, variables


def join(spec: dict, entities: pa.Table, features: list[pa.Table]) -> pa.Table:
    """The point-in-time training set: ``entities`` joined with ``features`` (in spec order)."""
    if ROW in entities.column_names:
        raise ValueError(f"the entity frame may not have a column named {ROW}")
    tables = {ENTITIES: entities.append_column(ROW, pa.array(range(entities.num_rows), pa.int64()))}
    tables |= {feature_table(i): table for i, table in enumerate(features)}
    sql, variables = query(spec, {name: table.schema for name, table in tables.items()})
    return engine.run_sql(sql, tables, variables)
