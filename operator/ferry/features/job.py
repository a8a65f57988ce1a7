"""``ferry features run|validate``: what a FeaturePipeline's Job executes.

``run`` computes the SQL transform (sources read through boto3 into Arrow, queried by DuckDB) and
writes ``<run>/part-0.parquet``; ``validate`` takes the Parquet a container transform wrote into
``$FERRY_OUTPUT_URI``. Both then check the expectations and the schema, write ``_result.json``
and, only when everything passed, move ``latest.json`` to this run — consumers never see bad data.
Exit code 3 means "output rejected" (the Job's podFailurePolicy fails at once, no retry).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, UTC

from ferry.adapters.s3 import ObjectStore
from ferry.features import engine, layout
from ferry.features.config import JobConfig

REJECTED = 3


def compute(store: ObjectStore, spec: dict, run: str, variables: dict[str, str]):
    sql = spec["transform"]["sql"]
    tables = {s["name"]: store.read_table(s["uri"], s.get("format", "parquet"))
              for s in sql["sources"]}
    table = engine.run_sql(sql["query"], tables, variables)
    store.write_parquet(f"{run}{layout.DATA}", table)
    return table


def publish(store: ObjectStore, spec: dict, version: str, run_id: str, table) -> dict:
    run = layout.run_uri(version, run_id)
    latest = store.get_json(layout.latest_uri(version)) or {}
    checks = engine.evaluate(table, spec.get("expectations") or [])
    result = engine.summary(run_id, table, checks, run, latest.get("schemaHash"))
    result["finishedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    store.put_json(layout.result_uri(run), result)
    if result["passed"]:
        store.put_json(layout.latest_uri(version), {
            "runId": run_id, "uri": run, "rows": result["rows"],
            "schemaHash": result["schema"]["hash"], "time": result["finishedAt"]})
        keep = (spec.get("output") or {}).get("keepLast", 10)
        results = [o for o in store.list(version) if o["uri"].endswith(layout.RESULT)]
        for stale in layout.runs_to_delete(results, keep, run):
            store.delete([o["uri"] for o in store.list(stale)])
    return result


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "run"
    config = JobConfig.from_env(os.environ)
    spec, version, run_id = config.pipeline, config.version_uri, config.run_id
    store = ObjectStore(endpoint_url=config.s3_endpoint)
    run = layout.run_uri(version, run_id)
    if command == "run":
        table = compute(store, spec, run, config.sql_variables())
    elif command == "validate":
        table = store.read_table(run, "parquet")
    else:
        print(f"unknown command {command!r}; use run or validate", file=sys.stderr)
        return 2
    result = publish(store, spec, version, run_id, table)
    print(json.dumps({k: result[k] for k in ("runId", "rows", "passed", "schemaChanged")}))
    for check in result["expectations"]:
        if not check["passed"]:
            print(f"FAILED {check['expectation']}: {check['observed']}", file=sys.stderr)
    if result["schemaChanged"]:
        print("FAILED schema differs from the published schema of this version; "
              "publish a new version instead", file=sys.stderr)
    return 0 if result["passed"] else REJECTED
