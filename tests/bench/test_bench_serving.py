"""`ferry serve` vs `mlflow models serve` on the same machine, same load generator, one run.

Models: a 100-tree RandomForest and a LogisticRegression on 20 float features (scikit-learn,
saved as MLflow pyfunc models). Load: wrk (Debian's; installed with apt-get when missing), one
thread, 1/8/32 connections, 1-row and 32-row ``dataframe_split`` bodies, ``BENCH_SECONDS`` (5) per
point after a warm-up. Also: start-up (launch → ``/ping`` 200) and the memory of the server's whole
process tree (RSS idle and after the load; private memory, USS, after the load). Asserts only that
the answers equal the model's own ``predict`` (also under concurrency, where ferry batches
requests) and that no request failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from ferry_dev.processes import free_port

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = (1, 8, 32)
ROWS = (1, 32)
COLUMNS = [f"f{i}" for i in range(20)]
BIN = Path(sys.executable).parent

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = io.open(os.getenv("BODY"), "rb")
wrk.body = f:read("*a")
f:close()
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %d %d %d %d %d\\n", summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
"""


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True)
        found = shutil.which("wrk")
    if not found:
        pytest.fail("wrk is needed for this benchmark: apt-get install wrk")
    return found


def tree_memory_mb(pid: int) -> tuple[float, float]:
    """(RSS, USS) in MiB summed over a process and all its descendants. RSS is how the peer figures
    were taken (shared library pages count once per process); USS counts private pages only."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [child for child, ppid in parents.items() if ppid == parent and child not in tree]
        tree.update(children)
        frontier += children
    rss = uss = 0.0
    for member in tree:
        try:
            for line in Path(f"/proc/{member}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key == "Rss":
                    rss += int(value.split()[0]) / 1024
                elif key in ("Private_Clean", "Private_Dirty"):
                    uss += int(value.split()[0]) / 1024
        except OSError:
            continue
    return rss, uss


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    folder = tmp_path_factory.mktemp("models")
    features, labels = make_classification(n_samples=10000, n_features=20, n_informative=10,
                                           random_state=0)
    frame = pd.DataFrame(features, columns=COLUMNS)
    saved = {}
    for name, estimator, trusted in [
            ("rf100", RandomForestClassifier(n_estimators=100, n_jobs=1, random_state=0),
             ["sklearn.tree._tree.Tree"]),
            ("logreg", LogisticRegression(max_iter=1000), None)]:
        estimator.fit(frame, labels)
        path = folder / name
        mlflow.sklearn.save_model(estimator, str(path), skops_trusted_types=trusted,
                                  signature=infer_signature(frame, estimator.predict(frame)))
        saved[name] = path
    return saved


def bodies(folder: Path) -> dict[int, Path]:
    rng = np.random.default_rng(7)
    found = {}
    for rows in ROWS:
        data = (rng.normal(size=(rows, len(COLUMNS))) * 2).tolist()
        path = folder / f"body{rows}.json"
        path.write_text(json.dumps({"dataframe_split": {"columns": COLUMNS, "data": data}}))
        found[rows] = path
    return found


def start(kind: str, model: Path, port: int, log: Path) -> subprocess.Popen:
    if kind == "mlflow":
        argv = [str(BIN / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local",
                "-h", "127.0.0.1", "-p", str(port)]
    else:
        argv = [str(BIN / "ferry"), "serve", "--model-uri", str(model), "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "WARNING"]
    # mlflow execs `uvicorn` from PATH
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    return subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def wait_ping(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    pytest.fail(f"{url} not ready after {timeout}s: {log.read_text()[-2000:]}")


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (mlflow's CLI runs uvicorn as a child), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=30)
            return
        except subprocess.TimeoutExpired:
            continue


def wrk(binary: str, script: Path, body: Path, url: str, connections: int, seconds: int) -> dict:
    out = subprocess.run([binary, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
                          "-s", str(script), f"{url}/invocations"], capture_output=True, text=True,
                         env={**os.environ, "BODY": str(body)}, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    count, duration_us, p50, p99, status_errors, socket_errors = map(int, line.split()[1:])
    return {"rps": count / (duration_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "errors": status_errors + socket_errors}


def check_answers(url: str, model_path: Path, body_files: dict[int, Path]) -> int:
    """Every answer equals the model's own predict: each body alone, then 64 distinct requests at
    once (which ferry batches); returns the number of rows compared."""
    import mlflow.pyfunc
    import pandas as pd

    model = mlflow.pyfunc.load_model(str(model_path))
    checked = 0
    for path in body_files.values():
        document = json.loads(path.read_text())
        frame = pd.DataFrame(document["dataframe_split"]["data"], columns=COLUMNS)
        answer = requests.post(f"{url}/invocations", json=document, timeout=30).json()["predictions"]
        assert answer == model.predict(frame).tolist()
        checked += len(frame)
    rng = np.random.default_rng(11)
    requests_rows = [rng.normal(size=(int(rng.integers(1, 5)), len(COLUMNS))) * 2 for _ in range(64)]

    def ask(rows):
        body = {"dataframe_split": {"columns": COLUMNS, "data": rows.tolist()}}
        return requests.post(f"{url}/invocations", json=body, timeout=60).json()["predictions"]

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(ask, requests_rows))
    for rows, answer in zip(requests_rows, answers, strict=True):
        assert answer == model.predict(pd.DataFrame(rows, columns=COLUMNS)).tolist()
        checked += len(rows)
    return checked


def test_bench_serving(models, tmp_path):
    binary = ensure_wrk()
    script = tmp_path / "post.lua"
    script.write_text(WRK_SCRIPT)
    body_files = bodies(tmp_path)
    results: dict[tuple, dict] = {}
    for model_name, model_path in models.items():
        for kind in ("mlflow", "ferry"):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            log = tmp_path / f"{kind}-{model_name}.log"
            launched = time.monotonic()
            process = start(kind, model_path, port, log)
            try:
                wait_ping(url, process, log)
                startup = time.monotonic() - launched
                checked = check_answers(url, model_path, body_files)
                idle_rss, _ = tree_memory_mb(process.pid)
                wrk(binary, script, body_files[1], url, 8, 2)  # warm-up
                for rows in ROWS:
                    for connections in CONNECTIONS:
                        point = wrk(binary, script, body_files[rows], url, connections, SECONDS)
                        assert point["errors"] == 0, (kind, model_name, rows, connections, point)
                        results[(model_name, kind, rows, connections)] = point
                        print(f"BENCH serve model={model_name} server={kind} rows={rows} "
                              f"conns={connections} rps={point['rps']:.1f} p50_ms={point['p50_ms']:.1f} "
                              f"p99_ms={point['p99_ms']:.1f}", flush=True)
                loaded_rss, loaded_uss = tree_memory_mb(process.pid)
                results[(model_name, kind)] = {"startup": startup, "idle": idle_rss, "loaded": loaded_rss,
                                               "uss": loaded_uss}
                print(f"BENCH serve model={model_name} server={kind} startup_s={startup:.1f} "
                      f"rss_idle_mib={idle_rss:.0f} rss_after_load_mib={loaded_rss:.0f} "
                      f"uss_after_load_mib={loaded_uss:.0f} answers_checked_rows={checked}", flush=True)
            finally:
                stop(process)
    for model_name in models:
        for rows in ROWS:
            ferry, peer = results[(model_name, "ferry", rows, 32)], results[(model_name, "mlflow", rows, 32)]
            print(f"BENCH serve model={model_name} rows={rows} conns=32 ferry/mlflow: "
                  f"throughput x{ferry['rps'] / peer['rps']:.1f}, p99 {ferry['p99_ms']:.0f} vs "
                  f"{peer['p99_ms']:.0f} ms")
        ferry, peer = results[(model_name, "ferry")], results[(model_name, "mlflow")]
        print(f"BENCH serve model={model_name} ferry/mlflow: RSS {ferry['loaded']:.0f} vs "
              f"{peer['loaded']:.0f} MiB ({ferry['loaded'] / peer['loaded']:.0%}), private (USS) "
              f"{ferry['uss']:.0f} vs {peer['uss']:.0f} MiB ({ferry['uss'] / peer['uss']:.0%}), "
              f"start-up {ferry['startup']:.1f} vs {peer['startup']:.1f} s")
