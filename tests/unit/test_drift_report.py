"""The JSON and HTML reports, and `ferry drift compare`'s exit codes."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ferry.api.inferenceservice import DriftMonitor
from ferry.cli import main
from ferry.drift import report
from ferry.drift.data import TableDataset
from ferry.drift.engine import compare


def frames(rows: int, shifted: int, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    rng = np.random.default_rng(seed)
    ref = {f"f{i}": rng.normal(size=rows) for i in range(4)} | {
        "city": rng.choice(["a", "b", "c"], rows)}
    cur = {f"f{i}": rng.normal(size=rows) + (1.0 if i < shifted else 0.0) for i in range(4)} | {
        "city": rng.choice(["a", "b", "c"], rows)}
    return pa.table(ref), pa.table(cur)


def charts(html: str) -> list[str]:
    return re.findall(r'<svg class="chart" data-feature="([^"]+)"', html)


def test_html_is_self_contained_with_one_chart_per_compared_column():
    ref, cur = frames(3000, shifted=3)
    result = compare(TableDataset(ref, "ref"), TableDataset(cur, "cur"), DriftMonitor())
    html = report.to_html(result).decode()
    assert result["verdict"] == "Drifted"
    assert sorted(charts(html)) == ["city", "f0", "f1", "f2", "f3"]
    assert charts(html)[:3] == ["f0", "f1", "f2"]  # drifted columns come first
    assert "<script" not in html and not re.search(r'(src|href)="https?:', html)
    assert html.count("Drifted") >= 4


def test_json_report_round_trips():
    ref, cur = frames(500, shifted=1)
    result = compare(TableDataset(ref), TableDataset(cur), DriftMonitor())
    loaded = json.loads(report.to_json(result))
    assert loaded["verdict"] == result["verdict"]
    assert loaded["columns"][0]["statistics"]["ksPValue"] == pytest.approx(
        result["columns"][0]["statistics"]["ksPValue"])


@pytest.mark.parametrize(("shifted", "current_rows", "code"),
                         [(0, 3000, 0), (3, 3000, 1), (3, 50, 3)],
                         ids=["no-drift", "drift", "inconclusive"])
def test_compare_exit_codes_and_reports(tmp_path, capsys, shifted, current_rows, code):
    ref, cur = frames(3000, shifted)
    pq.write_table(ref, tmp_path / "ref.parquet")
    pq.write_table(cur.slice(0, current_rows), tmp_path / "cur.parquet")
    out = tmp_path / "out"
    assert main(["drift", "compare", "--reference", str(tmp_path / "ref.parquet"),
                 "--current", str(tmp_path / "cur.parquet"), "--out", str(out)]) == code
    verdict = json.loads((out / "drift.json").read_text())["verdict"]
    assert capsys.readouterr().out.startswith(verdict)
    assert (out / "drift.html").read_bytes().startswith(b"<!DOCTYPE html>")


def test_compare_config_file_and_errors(tmp_path, capsys):
    ref, cur = frames(3000, shifted=1)
    pq.write_table(ref, tmp_path / "ref.parquet")
    pq.write_table(cur, tmp_path / "cur.parquet")
    args = ["drift", "compare", "--reference", str(tmp_path / "ref.parquet"),
            "--current", str(tmp_path / "cur.parquet")]
    config = tmp_path / "drift.json"
    config.write_text(json.dumps({"features": ["f0"], "methods": {"f0": "psi"}}))
    assert main([*args, "--config", str(config)]) == 1
    assert "drifted: f0" in capsys.readouterr().out
    config.write_text(json.dumps({"methods": {"f0": "magic"}}))
    assert main([*args, "--config", str(config)]) == 4
    assert "ValidationError" in capsys.readouterr().err
    assert main(["drift", "compare", "--reference", str(tmp_path / "missing.parquet"),
                 "--current", str(tmp_path / "cur.parquet")]) == 4
