"""``ferry quality run``: one scheduled run of the quality monitor (the CronJob's pod).

It reads the prediction log of the last ``window`` and every label under the log's ``labels/``
prefix, joins them (``quality.join``), summarizes per version and slice (``quality.summary``),
judges the summary (``reconcilers.quality``), writes ``quality.json`` and ``quality.html`` under
``<prediction log>/quality-reports/<run>/`` and merge-patches ``status.quality`` with the pod's
own ServiceAccount. It exports no metrics itself: the operator turns ``status.quality`` into the
``QualityHealthy`` condition and the ``ferry_model_quality`` gauge. The log may also be a local
folder (then nothing touches S3). Exit 0 once the status is patched, whatever the verdict
(a degraded model is news, not a failed Job); 4 when the run cannot be made.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa

from ferry.api.common import duration_seconds
from ferry.drift import data
from ferry.drift.command import now_iso, patch_status
from ferry.quality import report
from ferry.quality.config import QualityConfig
from ferry.quality.join import join
from ferry.quality.labels import read_labels
from ferry.quality.layout import labels_uri, reports_uri
from ferry.quality.summary import summarize, task_of
from ferry.reconcilers.quality import judge

EXIT_ERROR = 4
PREDICTION = "prediction"
TIME = pa.timestamp("ms", tz="UTC")


def _store():
    from ferry.adapters.s3 import ObjectStore

    return ObjectStore(endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3")
                       or os.environ.get("FERRY_S3_ENDPOINT"))


def read_predictions(files: list[str], store, start: datetime, end: datetime,
                     prediction_column: str, spool: str) -> pa.Table | None:
    """The logged rows with ``start <= ferry_timestamp < end`` (S3 objects spooled to ``spool``),
    the prediction as column ``prediction``; None when there are none."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    paths = []
    for index, uri in enumerate(files):
        if data.is_s3(uri):
            target = Path(spool) / f"{index}.parquet"
            store.download(uri, target)
            paths.append(str(target))
        else:
            paths.append(uri)
    if not paths:
        return None
    schema = pa.unify_schemas([pq.read_schema(p) for p in paths], promote_options="permissive")
    time = ds.field(data.TIMESTAMP_COLUMN)
    table = ds.dataset(paths, schema=schema, format="parquet").to_table(
        filter=(time >= pa.scalar(start, TIME)) & (time < pa.scalar(end, TIME)))
    if not table.num_rows:
        return None
    for needed in ("ferry_prediction_id", prediction_column):
        if needed not in table.column_names:
            raise ValueError(f"the prediction log has no column {needed!r}")
    if prediction_column != PREDICTION:
        table = table.drop_columns([c for c in (PREDICTION,) if c in table.column_names])
        table = table.rename_columns([PREDICTION if c == prediction_column else c
                                      for c in table.column_names])
    return table


def evaluate(settings: QualityConfig, start: datetime, end: datetime, store) -> dict:
    """The judged summary of the window (``status.quality`` without the run's identity)."""
    monitor, logs = settings.quality, settings.prediction_log_uri
    with tempfile.TemporaryDirectory(prefix="ferry-quality-") as spool:
        predictions = read_predictions(data.prediction_log_objects(store, logs, start, end), store,
                                       start, end, monitor.prediction_column, spool)
        if predictions is None:
            return judge({"task": monitor.task or "classification", "versions": []}, monitor)
        outcome = (monitor.outcome,) if monitor.outcome else ()
        # The outcome is the logged row's when the log has the column, else the label files'.
        labels = read_labels(labels_uri(logs), store, tuple(
            c for c in outcome if c not in predictions.column_names))
        joined = join(predictions, labels, duration_seconds(monitor.join_window), monitor.slices,
                      keep=list(outcome))
    task = monitor.task or task_of(joined)
    summary = summarize(joined, monitor.slices, task=task, positive=monitor.positive_class,
                        outcome=monitor.outcome)
    return judge(summary, monitor)


def write_reports(result: dict, out: str, store) -> tuple[str, str]:
    """``quality.json`` and ``quality.html`` into an ``s3://`` prefix or a local folder."""
    payloads = {"quality.json": report.to_json(result), "quality.html": report.to_html(result)}
    uris = [f"{out.rstrip('/')}/{name}" for name in payloads]
    for uri, payload in zip(uris, payloads.values(), strict=True):
        if data.is_s3(uri):
            store.put_bytes(uri, payload)
        else:
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
            Path(uri).write_bytes(payload)
    return uris[0], uris[1]


def run(settings: QualityConfig, now: datetime | None = None, store=None,
        patch: Callable[[str, str, dict, str], None] = patch_status) -> dict:
    """One run; returns the ``status.quality`` it patched."""
    end = now or datetime.now(UTC)
    monitor = settings.quality
    start = end - timedelta(seconds=duration_seconds(monitor.window))
    if store is None and data.is_s3(settings.prediction_log_uri):
        store = _store()
    run_id = settings.run_id or end.strftime("%Y%m%dT%H%M%SZ")
    status = {"lastRunAt": now_iso(end), "runId": run_id, "window": monitor.window,
              "joinWindow": monitor.join_window, **evaluate(settings, start, end, store)}
    name, namespace = settings.inference_service, settings.namespace
    json_uri, html_uri = write_reports(
        {**status, "subject": f"{namespace}/{name}", "period": f"{now_iso(start)}/{now_iso(end)}"},
        f"{reports_uri(settings.prediction_log_uri)}/{run_id}", store)
    status |= {"reportUri": json_uri, "htmlReportUri": html_uri}
    patch(namespace, name, status, "quality")
    return status


def main(args) -> int:
    try:
        status = run(QualityConfig.from_env(os.environ))
    except Exception as error:  # noqa: BLE001 - every failure maps to one documented exit code
        print(f"ferry quality run: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{status['verdict']}: {status['message']}")
    print(json.dumps(status, sort_keys=True))
    return 0
