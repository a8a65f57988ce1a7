"""The HTML drift report renders in a real headless Chromium: a screenshot in the test's tmp dir,
one chart per drifted feature, and the chart colours really on screen."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pyarrow as pa
from PIL import Image

from ferry.api.inferenceservice import DriftMonitor
from ferry_dev.services import ensure_debian_packages
from ferry.drift import report
from ferry.drift.data import TableDataset
from ferry.drift.engine import compare

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    ensure_debian_packages({"chromium": "chromium"})
    return shutil.which("chromium")


def drifted_report() -> dict:
    rng = np.random.default_rng(42)
    rows = 4000
    reference = {f"x{i}": rng.normal(size=rows) for i in range(5)} | {
        "country": rng.choice(["DE", "FR", "US"], rows)}
    current = {f"x{i}": rng.normal(size=rows) + (0.8 if i < 2 else 0.0) for i in range(5)} | {
        "country": rng.choice(["DE", "FR", "US", "XX"], rows)}
    return compare(TableDataset(pa.table(reference), "reference.parquet"),
                   TableDataset(pa.table(current), "current.parquet"), DriftMonitor())


def pixels_near(pixels: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    return int(np.all(np.abs(pixels - np.array(colour)) <= tolerance, axis=-1).sum())


def test_html_report_renders_with_one_chart_per_drifted_feature(tmp_path):
    result = drifted_report()
    drifted = sorted(result["driftedFeatures"])
    assert drifted == ["country", "x0", "x1"]
    html = report.to_html(result).decode()
    page = tmp_path / "drift.html"
    page.write_text(html)

    charts = re.findall(r'<svg class="chart" data-feature="([^"]+)"', html)
    for feature in drifted:
        assert charts.count(feature) == 1, feature
    assert charts[:3] == ["country", "x0", "x1"]  # drifted first, each with its own chart

    screenshot = tmp_path / "drift.png"
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1200,2600", f"--screenshot={screenshot}", page.as_uri()],
                   check=True, timeout=120, capture_output=True)
    image = Image.open(screenshot).convert("RGB")
    assert image.size == (1200, 2600)
    pixels = np.asarray(image, dtype=np.int16)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is blank"
    current_bars = pixels_near(pixels, (0xe8, 0x83, 0x3a))
    reference_bars = pixels_near(pixels, (0x6b, 0x8f, 0xb5))
    drifted_badges = pixels_near(pixels, (0xc0, 0x39, 0x2b), 20)
    assert current_bars > 2000 and reference_bars > 2000, (current_bars, reference_bars)
    assert drifted_badges > 200
