"""``ferry drift compare`` (two datasets, from a shell) and ``ferry drift monitor`` (the CronJob pod).

Exit codes, so scripts and Jobs can branch on the verdict: 0 no drift, 1 drift, 3 inconclusive,
4 the comparison could not run (unreadable data, bad configuration). ``monitor`` exits 0 whatever
the verdict once the status is patched: drift is news, not a failed Job.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ferry.api.common import duration_seconds
from ferry.drift import data, engine, report
from ferry.drift.config import MonitorConfig, load_config

EXIT_CODES = {engine.NO_DRIFT: 0, engine.DRIFTED: 1, engine.INCONCLUSIVE: 3}
EXIT_ERROR = 4
GROUP, VERSION, PLURAL = "ferry.dev", "v1alpha1", "inferenceservices"


def _store():
    from ferry.adapters.s3 import ObjectStore

    return ObjectStore(endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3")
                       or os.environ.get("FERRY_S3_ENDPOINT"))


def write_reports(result: dict, out: str, store=None) -> tuple[str, str]:
    """``drift.json`` and ``drift.html`` into a local directory or an ``s3://`` prefix."""
    payloads = {"drift.json": report.to_json(result), "drift.html": report.to_html(result)}
    if data.is_s3(out):
        store = store or _store()
        uris = [f"{out.rstrip('/')}/{name}" for name in payloads]
        for uri, payload in zip(uris, payloads.values(), strict=True):
            store.put_bytes(uri, payload)
        return uris[0], uris[1]
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, payload in payloads.items():
        (directory / name).write_bytes(payload)
        paths.append(str(directory / name))
    return paths[0], paths[1]


def _needs_store(*uris: str) -> bool:
    return any(uri and data.is_s3(uri) for uri in uris)


def compare(args) -> int:
    try:
        config = load_config(Path(args.config).read_text() if args.config else None)
        store = _store() if _needs_store(args.reference, args.current, args.out or "") else None
        reference = data.ParquetDataset.open(args.reference, store)
        current = data.ParquetDataset.open(args.current, store)
        result = engine.compare(reference, current, config)
        result["time"] = now_iso()
        if args.out:
            json_uri, html_uri = write_reports(result, args.out, store)
            result["reportUri"], result["htmlReportUri"] = json_uri, html_uri
    except Exception as error:  # noqa: BLE001 - every failure maps to one documented exit code
        print(f"ferry drift compare: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(summary_line(result))
    for name, score in sorted(result["driftedFeatures"].items()):
        print(f"  drifted: {name} {score:.4g}")
    if args.out:
        print(f"  report: {result['reportUri']}\n  html:   {result['htmlReportUri']}")
    return EXIT_CODES[result["verdict"]]


def summary_line(result: dict) -> str:
    return (f"{result['verdict']}: {result['message']} "
            f"({result['current']['rows']} current rows vs {result['reference']['rows']})")


def now_iso(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def drift_summary(result: dict, window: str, run_id: str, json_uri: str, html_uri: str) -> dict:
    """The ``status.drift`` patch (``DriftSummary``)."""
    return {"time": result["time"], "window": window, "verdict": result["verdict"],
            "driftedFeatures": result["driftedFeatures"], "driftShare": result["driftShare"],
            "featuresChecked": result["featuresChecked"], "rows": result["current"]["rows"],
            "referenceRows": result["reference"]["rows"], "referenceUri": result["reference"]["uri"],
            "runId": run_id, "message": result["message"][:1024], "reportUri": json_uri,
            "htmlReportUri": html_uri}


def monitor(env: dict[str, str] | None = None, now: datetime | None = None) -> int:
    """One scheduled run: the prediction log of the last window against the reference, reports
    to S3, ``status.drift`` patched with the pod's own ServiceAccount, optional Pushgateway."""
    settings = MonitorConfig.from_env(os.environ if env is None else env)
    name, namespace, config = settings.inference_service, settings.namespace, settings.drift
    reference_uri = settings.reference or config.reference
    if not reference_uri:
        print("ferry drift monitor: no reference (FERRY_DRIFT_REFERENCE)", file=sys.stderr)
        return EXIT_ERROR
    end = now or datetime.now(UTC)
    start = end - timedelta(seconds=duration_seconds(config.window))
    run_id = settings.run_id or end.strftime("%Y%m%dT%H%M%SZ")
    store = _store()

    reference = data.ParquetDataset.open(reference_uri, store)
    logs = settings.prediction_log_uri
    log_files = data.prediction_log_objects(store, logs, start, end)
    if log_files:
        current = data.ParquetDataset.open_many(log_files, logs, store)
        current.restrict_time(start, end)
    else:
        import pyarrow as pa

        current = data.TableDataset(pa.table({}), logs)
    result = engine.compare(reference, current, config)
    result["time"], result["subject"] = now_iso(end), f"{namespace}/{name}"
    result["window"] = f"{now_iso(start)}/{now_iso(end)}"
    json_uri, html_uri = write_reports(result, f"{settings.report_uri.rstrip('/')}/{run_id}", store)
    summary = drift_summary(result, config.window, run_id, json_uri, html_uri)
    patch_status(namespace, name, summary)
    if settings.pushgateway_url:
        push_metrics(settings.pushgateway_url, namespace, name, result)
    print(summary_line(result))
    print(json.dumps(summary, sort_keys=True))
    return 0


def patch_status(namespace: str, name: str, summary: dict, field: str = "drift") -> None:
    """Merge-patch ``status.<field>`` with in-cluster credentials (the pod's ServiceAccount; the
    quality monitor's patches ``status.quality``)."""
    from kubernetes import client, config

    config.load_incluster_config()
    client.CustomObjectsApi().patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, name, {"status": {field: summary}})


def push_metrics(gateway: str, namespace: str, name: str, result: dict) -> None:
    """``ferry_drift_score{feature,method}``, ``ferry_drift_detected``, ``ferry_drift_share``."""
    from prometheus_client import CollectorRegistry, Gauge, push_to_gateway

    registry = CollectorRegistry()
    score = Gauge("ferry_drift_score", "Drift score of a column (p-value or distance, see method)",
                  ["feature", "method"], registry=registry)
    for column in result["columns"]:
        if column["score"] is not None:
            score.labels(column["name"], column["method"]).set(column["score"])
    Gauge("ferry_drift_detected", "1 when the dataset drifted, 0 otherwise (also inconclusive)",
          registry=registry).set(1 if result["verdict"] == engine.DRIFTED else 0)
    Gauge("ferry_drift_inconclusive", "1 when the last run had too little data",
          registry=registry).set(1 if result["verdict"] == engine.INCONCLUSIVE else 0)
    Gauge("ferry_drift_share", "Share of monitored columns that drifted",
          registry=registry).set(result["driftShare"] or 0.0)
    Gauge("ferry_drift_last_run_timestamp_seconds", "When the drift monitor last ran",
          registry=registry).set_to_current_time()
    push_to_gateway(gateway, job="ferry-drift", registry=registry,
                    grouping_key={"namespace": namespace, "inferenceservice": name})


def main(args) -> int:
    return compare(args) if args.action == "compare" else monitor()
