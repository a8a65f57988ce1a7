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

REJECTED = 3
INTERVAL_VARIABLES = ("FERRY_INTERVAL_START", "FERRY_INTERVAL_END")  # set for backfill runs


def _environment() -> tuple[dict, str, str]:
    spec = json.loads(os.environ["FERRY_PIPELINE"])
    return spec, os.environ["FERRY_VERSION_URI"], os.environ["FERRY_RUN_ID"]


def compute(store: ObjectStore, spec: dict, run: str):
    sql = spec["transform"]["sql"]
    tables = {s["name"]: store.read_table(s["uri"], s.get("format", "parquet"))
              for s in sql["sources"]}
    variables = {name.lower(): os.environ[name] for name in INTERVAL_VARIABLES if name in os.environ}
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
    spec, version, run_id = _environment()
    store = ObjectStore()
    run = layout.run_uri(version, run_id)
    if command == "run":
        table = compute(store, spec, run)
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
