"""Drift figures: 1M rows x 50 numeric features (10 shifted) as Parquet.

Three contenders, each a separate process so wall time and peak RSS (``ru_maxrss`` of the child)
are comparable:
- ``ferry drift compare`` (column by column from Parquet, all statistics, both reports);
- plain numpy/scipy: the whole table in memory, then per column the same exact statistics with
  scipy's functions (``ks_2samp``, ``wasserstein_distance``, PSI on reference deciles, JS);
- Evidently's ``DataDriftPreset`` in its own venv (``~/.cache/ferry/bench-evidently``, pandas < 3).
Prints ``BENCH`` lines; asserts only that every contender finished with the expected verdicts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

ROWS, FEATURES, SHIFTED, ROW_GROUP = 1_000_000, 50, 10, 100_000
SHIFT = 0.5
COLUMNS = [f"f{i}" for i in range(FEATURES)]
EXPECTED = set(COLUMNS[:SHIFTED])
EVIDENTLY_VENV = Path(os.environ.get("FERRY_CACHE", Path.home() / ".cache" / "ferry")) / \
    "bench-evidently"
RESULTS: dict[str, dict] = {}


def write_dataset(path: Path, seed: int, shift: float) -> None:
    rng = np.random.default_rng(seed)
    schema = pa.schema([(c, pa.float64()) for c in COLUMNS])
    with pq.ParquetWriter(path, schema) as writer:
        for _ in range(ROWS // ROW_GROUP):
            block = rng.normal(size=(ROW_GROUP, FEATURES))
            block[:, :SHIFTED] += shift
            writer.write_table(pa.Table.from_arrays(list(block.T), schema=schema))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("drift-bench")
    started = time.perf_counter()
    write_dataset(folder / "reference.parquet", 1, 0.0)
    write_dataset(folder / "current.parquet", 2, SHIFT)
    size = (folder / "reference.parquet").stat().st_size / 2**20
    print(f"\nBENCH drift data: 2 x {ROWS:,} rows x {FEATURES} float64 columns ({SHIFTED} shifted "
          f"by +{SHIFT} sd), {size:.0f} MiB Parquet each, written in "
          f"{time.perf_counter() - started:.1f}s")
    return folder / "reference.parquet", folder / "current.parquet"


def run_measured(argv: list[str], folder: Path,
                 timeout: float = 580) -> tuple[float, float, str, str, int]:
    """Wall seconds, peak RSS in MiB (``ru_maxrss`` of exactly this child, via wait4), stdout,
    stderr and exit code of one process."""
    started = time.perf_counter()
    out_path, err_path = folder / "stdout", folder / "stderr"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err)
        deadline = started + timeout
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() > deadline:
                    process.kill()
                    pid, status, usage = os.wait4(process.pid, 0)
                    break
                time.sleep(0.05)
        except BaseException:  # interrupted (pytest-timeout, Ctrl-C): leave no contender behind
            process.kill()
            os.wait4(process.pid, 0)
            raise
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, out_path.read_text(), err_path.read_text(), \
        process.returncode


PLAIN_SCRIPT = r'''
import json, sys, time
import numpy as np, pyarrow.parquet as pq
from scipy import stats
from scipy.spatial import distance
started = time.perf_counter()
ref_t, cur_t = pq.read_table(sys.argv[1]), pq.read_table(sys.argv[2])
columns = ref_t.column_names
ref = np.column_stack([ref_t.column(c).to_numpy() for c in columns]); del ref_t
cur = np.column_stack([cur_t.column(c).to_numpy() for c in columns]); del cur_t
read = time.perf_counter() - started
out = {}
for i, name in enumerate(columns):
    r, c = ref[:, i], cur[:, i]
    ks = stats.ks_2samp(r, c)
    wd = stats.wasserstein_distance(r, c)
    inner = np.unique(np.quantile(r, np.linspace(0, 1, 11)[1:-1]))
    edges = np.concatenate(([min(r.min(), c.min()) - 1], inner, [max(r.max(), c.max()) + 1]))
    pr = np.maximum(np.histogram(r, edges)[0] / r.size, 1e-4)
    pc = np.maximum(np.histogram(c, edges)[0] / c.size, 1e-4)
    hist = np.histogram_bin_edges(np.concatenate(([min(r.min(), c.min())], [max(r.max(), c.max())])), 30)
    js = distance.jensenshannon(np.histogram(r, hist)[0], np.histogram(c, hist)[0])
    out[name] = {"ks": float(ks.statistic), "ksp": float(ks.pvalue),
                 "wdn": float(wd / max(np.std(r), 1e-3)), "psi": float(np.sum((pc - pr) * np.log(pc / pr))),
                 "js": float(js)}
print(json.dumps({"read": read, "stats": out}))
'''

EVIDENTLY_SCRIPT = r'''
import json, sys, time
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
ref, cur = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
columns = list(ref.columns)
definition = DataDefinition(numerical_columns=columns)
started = time.perf_counter()
rds = Dataset.from_pandas(ref, data_definition=definition)
cds = Dataset.from_pandas(cur, data_definition=definition)
prepared = time.perf_counter()
snapshot = Report([DataDriftPreset()]).run(current_data=cds, reference_data=rds)
ran = time.perf_counter()
scores, drifted = {}, []
for metric in snapshot.dict()["metrics"]:
    config = metric.get("config", {})
    if config.get("type", "").endswith(":ValueDrift"):
        scores[config["column"]] = float(metric["value"])
        if float(metric["value"]) >= config["threshold"]:
            drifted.append(config["column"])
print(json.dumps({"prepare": prepared - started, "run": ran - prepared, "scores": scores,
                  "drifted": drifted}))
'''


def report(name: str, wall: float, rss: float, drifted: set[str], extra: str = "") -> None:
    RESULTS[name] = {"wall": wall, "rss": rss, "drifted": drifted}
    agree = "same verdicts as expected" if drifted == EXPECTED else \
        f"verdicts differ: {sorted(drifted ^ EXPECTED)}"
    print(f"BENCH drift {name}: {wall:.1f}s wall, peak RSS {rss:.0f} MiB, "
          f"{len(drifted)} drifted columns ({agree}){extra}")


def test_ferry_drift_compare(datasets, tmp_path):
    reference, current = datasets
    wall, rss, stdout, stderr, code = run_measured(
        [sys.executable, "-m", "ferry", "drift", "compare", "--reference", str(reference),
         "--current", str(current), "--out", str(tmp_path)], tmp_path)
    assert code == 0, stderr  # 10 of 50 columns drift: below the 50% share, so NoDrift
    result = json.loads((tmp_path / "drift.json").read_text())
    drifted = {c["name"] for c in result["columns"] if c["verdict"] == "Drifted"}
    RESULTS["ferry-stats"] = {c["name"]: c["statistics"] for c in result["columns"]}
    report("ferry drift compare", wall, rss, drifted,
           f"; engine {result['durationSeconds']:.1f}s; verdict {result['verdict']}")


def test_plain_numpy_scipy(datasets, tmp_path):
    reference, current = datasets
    script = tmp_path / "plain.py"
    script.write_text(PLAIN_SCRIPT)
    wall, rss, stdout, stderr, code = run_measured([sys.executable, str(script), str(reference),
                                                    str(current)], tmp_path)
    assert code == 0, stderr
    result = json.loads(stdout)
    drifted = {name for name, s in result["stats"].items() if s["wdn"] >= 0.1}
    extra = f"; read {result['read']:.1f}s"
    ours = RESULTS.get("ferry-stats")
    if ours:
        keys = {"ks": "ksStatistic", "ksp": "ksPValue", "wdn": "wassersteinNormed", "psi": "psi",
                "js": "jensenShannon"}
        worst = max(abs(ours[name][keys[k]] - value) for name, s in result["stats"].items()
                    for k, value in s.items())
        extra += f"; max |ferry - scipy| over all statistics {worst:.2e}"
        ferry = RESULTS["ferry drift compare"]
        extra += f"; this takes {wall / ferry['wall']:.2f}x ferry's wall time"
    report("plain numpy/scipy (whole table in memory)", wall, rss, drifted, extra)


def evidently_python() -> tuple[str | None, str]:
    """The bench venv's python with Evidently, created on first use; or None and why not."""
    python = EVIDENTLY_VENV / "bin" / "python"
    check = [str(python), "-c", "import evidently, pandas; print(evidently.__version__, "
                                "pandas.__version__)"]
    if python.exists() and subprocess.run(check, capture_output=True).returncode == 0:
        return str(python), ""
    subprocess.run([sys.executable, "-m", "venv", str(EVIDENTLY_VENV)], check=True)
    uv = shutil.which("uv") or str(Path(sys.executable).parent / "uv")
    install = ([uv, "pip", "install", "--python", str(python)] if Path(uv).exists()
               else [str(python), "-m", "pip", "install"])
    # Evidently 0.7 fails to import with pandas 3 (ImportError: infer_dtype_from_object).
    result = subprocess.run([*install, "evidently", "pandas<3", "pyarrow"], capture_output=True,
                            text=True, timeout=900)
    if result.returncode != 0:
        return None, (result.stderr or result.stdout)[-500:]
    return str(python), ""


EVIDENTLY_TIMEOUT = 1700  # ~250 s on a quiet 2-core machine; several times that under load


@pytest.mark.timeout(EVIDENTLY_TIMEOUT + 300)
def test_evidently_data_drift_preset(datasets, tmp_path):
    reference, current = datasets
    python, why = evidently_python()
    if python is None:
        print(f"BENCH drift evidently: not measured, the bench venv could not be installed: {why}")
        return
    version = subprocess.run([python, "-c", "import evidently; print(evidently.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    script = tmp_path / "evidently_bench.py"
    script.write_text(EVIDENTLY_SCRIPT)
    wall, rss, stdout, stderr, code = run_measured([python, str(script), str(reference),
                                                    str(current)], tmp_path, EVIDENTLY_TIMEOUT)
    if code == -9 and wall >= EVIDENTLY_TIMEOUT:
        print(f"BENCH drift evidently {version}: did not finish within {wall:.0f}s (killed), "
              f"peak RSS {rss:.0f} MiB so far")
        return
    assert code == 0, stderr[-2000:]
    result = json.loads(stdout)
    assert result["scores"], "no ValueDrift metrics found in the snapshot"
    drifted = set(result["drifted"])
    extra = (f"; evidently {version}: Report.run {result['run']:.1f}s, "
             f"Dataset.from_pandas {result['prepare']:.1f}s")
    ours = RESULTS.get("ferry-stats")
    if ours:
        worst = max(abs(ours[n]["wassersteinNormed"] - s) for n, s in result["scores"].items())
        extra += f"; max |ferry - evidently| normed Wasserstein {worst:.2e}"
        ferry = RESULTS["ferry drift compare"]
        extra += f"; this takes {wall / ferry['wall']:.1f}x ferry's wall time"
    report("evidently DataDriftPreset", wall, rss, drifted, extra)
