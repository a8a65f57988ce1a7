"""Quality figures: 10M logged predictions joined with 10M labels, metrics per version and for 3
slices, ferry's path against ``pandas.merge`` + scikit-learn on the same Parquet files.

Each side runs in a child process of its own (wall time and peak RSS, ``ru_maxrss`` of exactly
that child): ferry opens the log as a pyarrow dataset and reads the labels whole (as
``read_labels`` gives them), joins in DuckDB (``quality.join``, scanning the log) and builds
the summary (``quality.summary``, which also estimates the pending rows); the other reads them
with pandas, merges, drops labels outside the window and computes each metric with
``sklearn.metrics``. ``BENCH_ROWS`` shrinks the run. Goal, not asserted: 60 s, 2 GiB. Asserts
only that both give the same realized metrics (1e-9) and coverage.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.test_bench_drift import run_measured

ROWS = int(os.environ.get("BENCH_ROWS", 10_000_000))
WINDOW_DAYS = 7
SLICES = [{"name": "de", "column": "country", "values": ["de"]},
          {"name": "south", "column": "country", "values": ["it", "es"]},
          {"name": "big", "expression": "amount > 100"}]
METRICS = ("accuracy", "precision", "recall", "f1", "rocAuc", "logLoss", "calibrationError")
RESULTS: dict[str, dict] = {}


def hex_ids(rng: np.random.Generator, n: int) -> pa.Array:
    """n random 32-hex-digit ids (as ``ferry serve`` generates), built without Python objects."""
    raw = rng.integers(0, 256, (n, 16), dtype=np.uint8)
    digits = np.frombuffer(b"0123456789abcdef", np.uint8)
    text = np.empty((n, 32), np.uint8)
    text[:, 0::2], text[:, 1::2] = digits[raw >> 4], digits[raw & 15]
    offsets = np.arange(0, 32 * n + 1, 32, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(text)])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("quality-bench")
    started = time.perf_counter()
    rng = np.random.default_rng(14)
    ids = hex_ids(rng, ROWS)
    x = rng.normal(size=ROWS)
    p = 1 / (1 + np.exp(-2 * x))
    start = np.datetime64("2026-11-01T00:00:00", "ms").astype(np.int64)
    stamps = start + rng.integers(0, 7 * 86_400_000, ROWS)
    pq.write_table(pa.table({
        "country": pa.array(np.array(["de", "fr", "it", "es"])[rng.integers(0, 4, ROWS)]),
        "amount": rng.exponential(80, ROWS), "prediction": (p > 0.5).astype(np.int64),
        "ferry_model_version": pa.array(np.where(rng.random(ROWS) < 0.5, "1", "2")),
        "ferry_timestamp": pa.array(stamps, pa.timestamp("ms", tz="UTC")), "ferry_prediction_id": ids,
        "ferry_proba_0": 1 - p, "ferry_proba_1": p}), folder / "predictions.parquet")
    # 90% of the predictions get a label, 0 to 10 days late (some beyond the window); 10% of the
    # labels are for ids never logged here.
    known = rng.permutation(ROWS)[: ROWS * 9 // 10]
    label_ids = pa.concat_arrays([ids.take(pa.array(known)), hex_ids(rng, ROWS - known.size)])
    label_times = np.r_[stamps[known] + rng.integers(0, 10 * 86_400_000, known.size),
                        start + rng.integers(0, 7 * 86_400_000, ROWS - known.size)]
    labels = (rng.random(ROWS) < np.r_[p[known], np.full(ROWS - known.size, 0.5)]).astype(np.int64)
    pq.write_table(pa.table({"id": label_ids, "label": labels,
                             "time": pa.array(label_times, pa.timestamp("ms", tz="UTC"))}),
                   folder / "labels.parquet")
    print(f"\nBENCH quality data: {ROWS:,} predictions, {ROWS:,} labels, written in "
          f"{time.perf_counter() - started:.1f}s")
    return folder / "predictions.parquet", folder / "labels.parquet"


FERRY_SCRIPT = r'''
import json, sys
import pyarrow.dataset as ds, pyarrow.parquet as pq
from ferry.api.common import Slice
from ferry.quality.join import join
from ferry.quality.summary import summarize
slices = [Slice.model_validate(s) for s in json.loads(sys.argv[3])]
joined = join(ds.dataset(sys.argv[1]), pq.read_table(sys.argv[2]), float(sys.argv[4]), slices)
summary = summarize(joined, slices, positive=1)
out = {}
for entry in summary["versions"]:
    for part in [entry, *entry["slices"]]:
        key = entry["version"] + "/" + part.get("name", "")
        out[key] = {**part["realized"]["metrics"], "labelled": part["coverage"]["labelled"],
                    "total": part["coverage"]["total"]}
print(json.dumps(out))
'''

PANDAS_SCRIPT = r'''
import json, sys
import numpy as np, pandas as pd
from sklearn import metrics as sk
from sklearn.calibration import calibration_curve
slices, window = json.loads(sys.argv[3]), pd.Timedelta(seconds=float(sys.argv[4]))
log = pd.read_parquet(sys.argv[1])
labels = pd.read_parquet(sys.argv[2])
rows = log.merge(labels, how="left", left_on="ferry_prediction_id", right_on="id")
late = (rows["time"] < rows["ferry_timestamp"]) | (rows["time"] > rows["ferry_timestamp"] + window)
rows.loc[late, "label"] = np.nan
def ece(y, p):
    true, predicted = calibration_curve(y, p, n_bins=10, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], p), minlength=10)
    return float(np.sum(counts[counts > 0] * np.abs(true - predicted)) / len(p))
out = {}
for version, group in rows.groupby("ferry_model_version"):
    parts = {"": group}
    for s in slices:
        mask = group[s["column"]].astype(str).isin(s["values"]) if "values" in s else group["amount"] > 100
        parts[s["name"]] = group[mask]
    for name, part in parts.items():
        done = part[part["label"].notna()]
        y, yhat = done["label"].to_numpy(int), done["prediction"].to_numpy()
        p = done["ferry_proba_1"].to_numpy()
        out[f"{version}/{name}"] = {
            "accuracy": sk.accuracy_score(y, yhat), "precision": sk.precision_score(y, yhat),
            "recall": sk.recall_score(y, yhat), "f1": sk.f1_score(y, yhat), "rocAuc": sk.roc_auc_score(y, p),
            "logLoss": sk.log_loss(y, done[["ferry_proba_0", "ferry_proba_1"]].to_numpy()),
            "calibrationError": ece(y, p), "labelled": len(done), "total": len(part)}
print(json.dumps(out))
'''


def measure(name: str, script: str, data, tmp_path: Path) -> dict:
    path = tmp_path / f"{name}.py"
    path.write_text(script)
    wall, rss, stdout, stderr, code = run_measured(
        [sys.executable, str(path), str(data[0]), str(data[1]), json.dumps(SLICES),
         str(WINDOW_DAYS * 86400)], tmp_path)
    assert code == 0, stderr[-3000:]
    RESULTS[name] = json.loads(stdout)
    print(f"BENCH quality {name}: {wall:.1f}s wall, peak RSS {rss:.0f} MiB "
          f"({ROWS:,} predictions x {ROWS:,} labels, 2 versions x (all + {len(SLICES)} slices))")
    return RESULTS[name]


def test_ferry_quality_path(data, tmp_path):
    result = measure("ferry (DuckDB join + quality.summary)", FERRY_SCRIPT, data, tmp_path)
    assert len(result) == 2 * (1 + len(SLICES))


def test_pandas_merge_sklearn_and_same_values(data, tmp_path):
    theirs = measure("pandas.merge + sklearn.metrics", PANDAS_SCRIPT, data, tmp_path)
    ours = RESULTS.get("ferry (DuckDB join + quality.summary)") or measure(
        "ferry (DuckDB join + quality.summary)", FERRY_SCRIPT, data, tmp_path)
    assert ours.keys() == theirs.keys()
    worst = max(abs(ours[k][m] - theirs[k][m]) for k in ours for m in METRICS)
    print(f"BENCH quality agreement: max |ferry - sklearn| over {len(ours) * len(METRICS)} metric values "
          f"{worst:.2e}; coverage {ours['1/']['labelled']:,}/{ours['1/']['total']:,} for version 1")
    for key in ours:
        assert ours[key]["labelled"] == theirs[key]["labelled"] and ours[key]["total"] == theirs[key]["total"]
        assert {m: ours[key][m] for m in METRICS} == pytest.approx({m: theirs[key][m] for m in METRICS},
                                                                    abs=1e-9, rel=0)
