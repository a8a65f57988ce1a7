from datetime import datetime, timedelta, UTC

import pyarrow as pa
import pytest

from ferry.features import engine, layout

TABLE = pa.table({"id": [1, 2, 3, 3], "amount": [0.5, 2.0, None, 9.0],
                  "country": ["DE", "FR", "XX", "DE"]})


def by_name(results):
    return {r.expectation: r for r in results}


def test_sql_over_registered_tables():
    out = engine.run_sql("select country, count(*) as n from t group by country order by country",
                         {"t": TABLE})
    assert out.to_pydict() == {"country": ["DE", "FR", "XX"], "n": [2, 1, 1]}


def test_column_expectations():
    results = by_name(engine.evaluate(TABLE, [
        {"column": "amount", "type": "float", "notNull": True, "min": 0, "max": 5},
        {"column": "id", "unique": True, "type": "int"},
        {"column": "country", "allowedValues": ["DE", "FR"]},
        {"column": "missing", "notNull": True},
    ]))
    assert results["amount: type float"].passed
    assert not results["amount: not null"].passed and results["amount: not null"].observed == "1 nulls"
    assert results["amount: min 0"].passed
    assert not results["amount: max 5"].passed and results["amount: max 5"].observed == "max 9.0"
    assert not results["id: unique"].passed and results["id: unique"].observed == "1 duplicates"
    assert results["id: type int"].passed
    assert not results["country: allowed values"].passed
    assert "XX" in results["country: allowed values"].observed
    assert not results["missing: present"].passed


@pytest.mark.parametrize("bounds,passed", [({"min": 4}, True), ({"min": 5}, False),
                                            ({"max": 3}, False), ({"min": 1, "max": 4}, True)])
def test_row_count(bounds, passed):
    assert engine.evaluate(TABLE, [{"rowCount": bounds}])[0].passed is passed


def test_schema_hash_is_stable_and_sensitive_to_types():
    columns = engine.schema_of(TABLE)
    assert columns[0] == {"name": "id", "type": "int64"}
    assert engine.schema_hash(columns) == engine.schema_hash(list(columns))
    changed = [dict(c) for c in columns]
    changed[0]["type"] = "string"
    assert engine.schema_hash(changed) != engine.schema_hash(columns)


def test_summary_refuses_a_schema_change_within_a_version():
    checks = engine.evaluate(TABLE, [{"rowCount": {"min": 1}}])
    first = engine.summary("r1", TABLE, checks, "s3://b/p/", None)
    assert first["passed"] and not first["schemaChanged"] and first["rows"] == 4
    same = engine.summary("r2", TABLE, checks, "s3://b/p/", first["schema"]["hash"])
    assert same["passed"]
    other = engine.summary("r3", TABLE.drop_columns(["country"]), checks, "s3://b/p/",
                           first["schema"]["hash"])
    assert other["schemaChanged"] and not other["passed"]


def test_layout_paths():
    version = layout.version_prefix("ferry", "/features/", "transactions", "v2")
    assert version == "s3://ferry/features/transactions/v2/"
    assert layout.version_prefix("b", "", "fs", "v1") == "s3://b/fs/v1/"
    run = layout.run_uri(version, "tx-1")
    assert layout.result_uri(run) == "s3://ferry/features/transactions/v2/tx-1/_result.json"
    assert layout.latest_uri(version).endswith("/v2/latest.json")


def test_retention_keeps_newest_and_never_the_published_run():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    results = [{"uri": f"s3://b/v/r{i}/_result.json", "modified": now + timedelta(minutes=i)}
               for i in range(5)]
    assert layout.runs_to_delete(results, 2, None) == ["s3://b/v/r2/", "s3://b/v/r1/",
                                                       "s3://b/v/r0/"]
    assert "s3://b/v/r1/" not in layout.runs_to_delete(results, 2, "s3://b/v/r1/")
    assert layout.runs_to_delete(results, 10, None) == []
