"""``ferry features run|validate``: what a FeaturePipeline's Job executes.

``run`` computes the SQL transform (sources read through boto3 into Arrow, queried by DuckDB) or
the point-in-time join (``ferry.features.pointintime``) and writes ``<run>/part-0.parquet``;
``validate`` takes the Parquet a container transform wrote into ``$FERRY_OUTPUT_URI``. Both then
check the expectations and the schema, write ``_result.json`` (with, for ``run``, the URIs it read)
and, only when everything passed, move ``latest.json`` to this run — consumers never see bad data.
Exit code 3 means "output rejected" (the Job's podFailurePolicy fails it at once, no retry).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime, UTC

from ferry.adapters.s3 import ObjectStore
from ferry.features import engine, layout, pointintime
from ferry.features.config import JobConfig

REJECTED = 3


def read(store: ObjectStore, source: dict):
    """A declared source (``uri``, ``format``) as one Arrow table."""
    return store.read_table(source["uri"], source.get("format", "parquet"))


def published_run(store: ObjectStore, version: str, spec: dict, feature: dict) -> str:
    """The run a ``{featureSet, version}`` feature source reads: that version's ``latest.json``
    now, so the training set is built from validated outputs only and says which ones."""
    other = layout.sibling_version(version, spec["featureSet"], spec["version"],
                                   feature["featureSet"], feature["version"])
    latest = store.get_json(layout.latest_uri(other))
    if latest is None:
        raise FileNotFoundError(f"feature set {feature['featureSet']} version {feature['version']} "
                                f"has no published output at {other}")
    return latest["uri"]


def point_in_time(store: ObjectStore, spec: dict, version: str):
    """The point-in-time join and the URIs it read (entities first, then each feature source)."""
    config = spec["transform"]["pointInTime"]
    sources = [config["entities"]] + [
        feature if "uri" in feature else {"uri": published_run(store, version, spec, feature)}
        for feature in config["features"]]
    entities, *features = [read(store, source) for source in sources]
    return pointintime.join(config, entities, features), [source["uri"] for source in sources]


def compute(store: ObjectStore, spec: dict, version: str, run: str, variables: dict[str, str]):
    """Computes the output into ``run``; returns it and the URIs it was computed from."""
    if "pointInTime" in spec["transform"]:
        table, inputs = point_in_time(store, spec, version)
    else:
        sql = spec["transform"]["sql"]
        tables = {s["name"]: read(store, s) for s in sql["sources"]}
        table, inputs = engine.run_sql(sql["query"], tables, variables), [s["uri"] for s in sql["sources"]]
    store.write_parquet(f"{run}{layout.DATA}", table)
    return table, inputs


def publish(store: ObjectStore, spec: dict, version: str, run_id: str, table,
            inputs: list[str] | None = None) -> dict:
    run = layout.run_uri(version, run_id)
    latest = store.get_json(layout.latest_uri(version)) or {}
    checks = engine.evaluate(table, spec.get("expectations") or [])
    result = engine.summary(run_id, table, checks, run, latest.get("schemaHash"))
    result["finishedAt"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if inputs is not None:
        result["inputs"] = inputs
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
    inputs = None
    if command == "run":
        table, inputs = compute(store, spec, version, run, config.sql_variables())
    elif command == "validate":
        table = store.read_table(run, "parquet")
    else:
        print(f"unknown command {command!r}; use run or validate", file=sys.stderr)
        return 2
    result = publish(store, spec, version, run_id, table, inputs)
    print(json.dumps({k: result[k] for k in ("runId", "rows", "passed", "schemaChanged")}))
    for check in result["expectations"]:
        if not check["passed"]:
            print(f"FAILED {check['expectation']}: {check['observed']}", file=sys.stderr)
    if result["schemaChanged"]:
        print("FAILED schema differs from the published schema of this version; "
              "publish a new version instead", file=sys.stderr)
    return 0 if result["passed"] else REJECTED
