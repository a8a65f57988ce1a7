"""Pure feature logic: SQL over in-memory tables, published schema, expectations.

Sources are loaded into Arrow tables by the caller (through boto3, so no DuckDB network extension
is needed) and registered as DuckDB views under their declared names.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import pyarrow as pa
import pyarrow.compute as pc

ARROW_TYPES = {
    "int": (pa.types.is_integer,),
    "float": (pa.types.is_floating, pa.types.is_integer, pa.types.is_decimal),
    "string": (pa.types.is_string, pa.types.is_large_string),
    "bool": (pa.types.is_boolean,),
    "timestamp": (pa.types.is_timestamp,),
    "date": (pa.types.is_date,),
}


def run_sql(query: str, tables: dict[str, pa.Table],
            variables: dict[str, str | int] | None = None) -> pa.Table:
    """Run ``query``; ``variables`` are readable in SQL as ``getvariable('name')``."""
    import duckdb

    connection = duckdb.connect(":memory:")
    try:
        for name, table in tables.items():
            connection.register(name, table)
        for name, value in (variables or {}).items():
            connection.execute(f"SET VARIABLE {name} = ?", [value])
        return connection.sql(query).to_arrow_table()
    finally:
        connection.close()


def schema_of(table: pa.Table) -> list[dict[str, str]]:
    return [{"name": f.name, "type": str(f.type)} for f in table.schema]


def schema_hash(columns: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(columns, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CheckResult:
    expectation: str
    passed: bool
    observed: str


def _column_checks(table: pa.Table, spec: dict) -> list[CheckResult]:
    name = spec["column"]
    results = []
    if name not in table.column_names:
        return [CheckResult(f"{name}: present", False, "missing")]
    column = table.column(name)
    if spec.get("type"):
        ok = any(test(column.type) for test in ARROW_TYPES[spec["type"]])
        results.append(CheckResult(f"{name}: type {spec['type']}", ok, str(column.type)))
    if spec.get("notNull"):
        nulls = column.null_count
        results.append(CheckResult(f"{name}: not null", nulls == 0, f"{nulls} nulls"))
    if spec.get("unique"):
        distinct = len(pc.unique(column))
        results.append(CheckResult(f"{name}: unique", distinct == len(column),
                                   f"{len(column) - distinct} duplicates"))
    if spec.get("min") is not None or spec.get("max") is not None:
        low, high = pc.min(column).as_py(), pc.max(column).as_py()
        if spec.get("min") is not None:
            ok = low is None or low >= spec["min"]
            results.append(CheckResult(f"{name}: min {spec['min']}", ok, f"min {low}"))
        if spec.get("max") is not None:
            ok = high is None or high <= spec["max"]
            results.append(CheckResult(f"{name}: max {spec['max']}", ok, f"max {high}"))
    if spec.get("allowedValues"):
        allowed = set(spec["allowedValues"])
        seen = {str(v) for v in pc.unique(column.drop_null()).to_pylist()}
        unexpected = sorted(seen - allowed)
        results.append(CheckResult(f"{name}: allowed values", not unexpected,
                                   f"unexpected {unexpected[:5]}" if unexpected else "ok"))
    return results


def evaluate(table: pa.Table, expectations: list[dict]) -> list[CheckResult]:
    """Run every expectation (camelCase dicts as in the spec) against the output table."""
    results: list[CheckResult] = []
    for spec in expectations:
        if spec.get("column"):
            results += _column_checks(table, spec)
        if spec.get("rowCount"):
            bounds, rows = spec["rowCount"], table.num_rows
            ok = (bounds.get("min") is None or rows >= bounds["min"]) and (
                bounds.get("max") is None or rows <= bounds["max"])
            results.append(CheckResult(
                f"rowCount in [{bounds.get('min', '-')}, {bounds.get('max', '-')}]", ok, str(rows)))
    return results


def summary(run_id: str, table: pa.Table, checks: list[CheckResult], output_uri: str,
            published_hash: str | None) -> dict:
    """The run result the operator reads back (``_result.json``)."""
    columns = schema_of(table)
    digest = schema_hash(columns)
    schema_changed = published_hash is not None and published_hash != digest
    return {
        "runId": run_id,
        "rows": table.num_rows,
        "schema": {"columns": columns, "hash": digest},
        "expectations": [asdict(c) for c in checks],
        "schemaChanged": schema_changed,
        "passed": all(c.passed for c in checks) and not schema_changed,
        "outputUri": output_uri,
    }
