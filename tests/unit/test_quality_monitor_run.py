"""``ferry quality run`` end to end on a local prediction log and local label files: the same
code path as the CronJob's pod with S3 swapped for a folder and the status patch recorded."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn import metrics as sk

from ferry.api.inferenceservice import QualityMonitor, QualitySummary
from ferry.quality.command import run
from ferry.quality.config import QualityConfig
from ferry.serving.payload import Frame
from ferry.serving.predlog import log_table, object_key

NOW = datetime(2026, 3, 2, 12, 30, tzinfo=UTC)
ROWS = 400


def write_log(root: Path, version: str, frame: pd.DataFrame, proba: np.ndarray, at: datetime,
              ids: list[str], seq: int = 0) -> None:
    ms = int(at.timestamp() * 1000)
    table = log_table(Frame("frame", frame, None, len(frame)), (proba > 0.5).astype(np.int64),
                      version, ms, ids, np.column_stack([1 - proba, proba]), ("0", "1"))
    path = root / object_key("", version, "pod-a", ms, seq)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


class Patches:
    def __init__(self):
        self.calls = []

    def __call__(self, namespace, name, status, field):
        self.calls.append((namespace, name, field, json.loads(json.dumps(status))))


@pytest.fixture
def logged(tmp_path):
    """Two versions, an hour ago; version 2 is wrong more often. Labels for 3/4 of v1's rows and
    for only 30 of v2's; plus old predictions (outside the window) and a label too late to count."""
    rng = np.random.default_rng(3)
    truth = {}
    for version, flip in (("fraud-1", 0.1), ("fraud-2", 0.4)):
        frame = pd.DataFrame({"amount": rng.normal(100, 30, ROWS),
                              "country": rng.choice(["de", "fr"], ROWS)})
        proba = rng.random(ROWS)
        ids = [f"{version}-{i}" for i in range(ROWS)]
        write_log(tmp_path, version, frame, proba, NOW - timedelta(hours=1), ids)
        predicted = (proba > 0.5).astype(int)
        label = np.where(rng.random(ROWS) < flip, 1 - predicted, predicted)
        truth[version] = pd.DataFrame({"id": ids, "label": label, "prediction": predicted,
                                       "p1": proba, "country": frame["country"],
                                       "clicked": rng.integers(0, 2, ROWS)})
    old = pd.DataFrame({"amount": [1.0], "country": ["de"]})
    write_log(tmp_path, "fraud-1", old, np.array([0.9]), NOW - timedelta(days=3), ["old-0"], 1)
    v1 = truth["fraud-1"].iloc[: 3 * ROWS // 4]
    v2 = truth["fraud-2"].iloc[:30]
    labels = pd.concat([v1, v2])[["id", "label", "clicked"]]
    labels["time"] = pd.Timestamp(NOW - timedelta(minutes=30))
    late = pd.DataFrame({"id": [truth["fraud-1"]["id"].iloc[-1]], "label": [0], "clicked": [0],
                         "time": [pd.Timestamp(NOW + timedelta(days=30))]})
    (tmp_path / "labels").mkdir()
    pq.write_table(pa.Table.from_pandas(pd.concat([labels, late]), preserve_index=False),
                   tmp_path / "labels" / "batch-1.parquet")
    return tmp_path, truth


def monitor(**overrides) -> QualityMonitor:
    return QualityMonitor.model_validate({
        "window": "6h", "joinWindow": "2d", "minLabels": 50, "outcome": "clicked",
        "slices": [{"name": "de", "column": "country", "values": ["de"]}],
        "thresholds": {"accuracy": {"min": 0.8}}, **overrides})


def settings(root: Path, quality: QualityMonitor) -> QualityConfig:
    return QualityConfig(inference_service="fraud", prediction_log_uri=str(root), quality=quality,
                         namespace="team-a", run_id="fraud-quality-1")


def metric(group: dict, name: str) -> dict:
    return next(m for m in group["metrics"] if m["name"] == name)


def test_realized_metrics_per_version_and_slice_equal_scikit_learn(logged):
    root, truth = logged
    patches = Patches()
    status = run(settings(root, monitor()), now=NOW, patch=patches)
    assert patches.calls == [("team-a", "fraud", "quality", status)]
    QualitySummary.model_validate(status)
    v1 = next(v for v in status["versions"] if v["version"] == "fraud-1")
    rows = truth["fraud-1"].iloc[: 3 * ROWS // 4]
    assert v1["coverage"] == {"labelled": len(rows), "predicted": ROWS, "ratio": 0.75}
    expected = {"accuracy": sk.accuracy_score(rows.label, rows.prediction),
                "precision": sk.precision_score(rows.label, rows.prediction),
                "recall": sk.recall_score(rows.label, rows.prediction),
                "f1": sk.f1_score(rows.label, rows.prediction),
                "rocAuc": sk.roc_auc_score(rows.label, rows.p1),
                "logLoss": sk.log_loss(rows.label, np.column_stack([1 - rows.p1, rows.p1])),
                "outcome": rows.clicked.mean()}
    for name, value in expected.items():
        assert metric(v1, name)["value"] == pytest.approx(value, abs=1e-9), name
        assert metric(v1, name)["estimated"] is False
    assert v1["verdict"] == "Healthy"
    de = rows[rows.country == "de"]
    (slice_de,) = v1["slices"]
    assert slice_de["name"] == "de" and slice_de["coverage"]["labelled"] == len(de)
    assert metric(slice_de, "accuracy")["value"] == pytest.approx(
        sk.accuracy_score(de.label, de.prediction), abs=1e-9)


def test_too_few_labels_is_inconclusive_and_reports_the_estimate(logged):
    root, truth = logged
    status = run(settings(root, monitor()), now=NOW, patch=Patches())
    v2 = next(v for v in status["versions"] if v["version"] == "fraud-2")
    assert v2["verdict"] == "Inconclusive" and v2["coverage"]["labelled"] == 30
    accuracy = metric(v2, "accuracy")
    pending = truth["fraud-2"].iloc[30:]
    expected = np.mean(np.where(pending.prediction == 1, pending.p1, 1 - pending.p1))
    assert accuracy["estimated"] is True
    assert accuracy["value"] == pytest.approx(expected, abs=1e-9)
    assert metric(v2, "logLoss")["estimated"] is False  # no estimate for it: realized
    assert status["verdict"] == "Healthy"  # v1 is, and nothing is Degraded


def test_a_breach_makes_the_version_and_the_service_degraded(logged):
    root, _ = logged
    status = run(settings(root, monitor(thresholds={"accuracy": {"min": 0.95}})), now=NOW,
                 patch=Patches())
    v1 = next(v for v in status["versions"] if v["version"] == "fraud-1")
    assert v1["verdict"] == "Degraded" and status["verdict"] == "Degraded"
    assert metric(v1, "accuracy")["message"].startswith("accuracy 0.")
    assert "fraud-1: accuracy" in status["message"] and "fraud-1/de: accuracy" in status["message"]


def test_old_predictions_and_late_labels_do_not_count(logged):
    root, _ = logged
    status = run(settings(root, monitor()), now=NOW, patch=Patches())
    v1 = next(v for v in status["versions"] if v["version"] == "fraud-1")
    assert v1["coverage"]["predicted"] == ROWS  # not the three-day-old row
    assert v1["coverage"]["labelled"] == 3 * ROWS // 4  # not the label 30 days late


def test_reports_land_beside_the_labels(logged):
    root, _ = logged
    status = run(settings(root, monitor()), now=NOW, patch=Patches())
    folder = root / "quality-reports" / "fraud-quality-1"
    assert status["reportUri"] == str(folder / "quality.json")
    assert status["htmlReportUri"] == str(folder / "quality.html")
    saved = json.loads(Path(status["reportUri"]).read_text())
    assert saved["subject"] == "team-a/fraud" and saved["versions"] == status["versions"]
    html = Path(status["htmlReportUri"]).read_text()
    assert "<th>fraud-1</th><th>fraud-2</th>" in html and "Slice de" in html and "(est.)" in html


def test_an_empty_window_is_inconclusive(tmp_path):
    status = run(settings(tmp_path, monitor()), now=NOW, patch=Patches())
    assert status["verdict"] == "Inconclusive" and status["versions"] == []
    assert status["message"] == "no predictions in the window"


def test_a_renamed_prediction_column_is_read(logged):
    root, _ = logged
    with pytest.raises(ValueError, match="no column 'score'"):
        run(settings(root, monitor(predictionColumn="score")), now=NOW, patch=Patches())
    status = run(settings(root, monitor(predictionColumn="amount", task="regression",
                                        thresholds={})), now=NOW, patch=Patches())
    assert [m["name"] for m in status["versions"][0]["metrics"]] == ["mae", "rmse", "mape",
                                                                     "outcome"]


def test_a_slice_without_any_label_still_gets_the_estimate(logged):
    root, truth = logged
    ids = ["fraud-2-398", "fraud-2-399"]  # never labelled
    quality = monitor(slices=[{"name": "pending", "expression": f"ferry_prediction_id IN {tuple(ids)}"}])
    status = run(settings(root, quality), now=NOW, patch=Patches())
    v2 = next(v for v in status["versions"] if v["version"] == "fraud-2")
    (pending,) = v2["slices"]
    assert pending["coverage"] == {"labelled": 0, "predicted": 2, "ratio": 0.0}
    rows = truth["fraud-2"].set_index("id").loc[ids]
    assert metric(pending, "accuracy")["estimated"] is True
    assert metric(pending, "accuracy")["value"] == pytest.approx(
        np.mean(np.maximum(rows.p1, 1 - rows.p1)), abs=1e-9)
