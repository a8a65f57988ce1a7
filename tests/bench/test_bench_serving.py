"""`ferry serve` against its peers on the same machine, same load generator, interleaved rounds.

Peers: ``mlflow models serve`` (the project venv's MLflow, as shipped: ``--workers`` 1 and 2) on
``/invocations`` (``dataframe_split``), and MLServer 1.7.1 with its scikit-learn runtime on Open
Inference Protocol v2 (``/v2/models/<name>/infer``), in a venv of its own (``peers.py``) and tried
at ``parallel_workers`` 0, 1 and 2, each with adaptive batching off and on (32 requests / 5 ms).
mlserver-sklearn loads joblib/pickle files only and the MLflow models are saved as skops, so the
same fitted estimator is also written with joblib for it (its MLflow runtime would add pyfunc's
overhead). ``ferry serve`` runs with ``--workers`` 1 and ``auto`` and is loaded on both protocols.

Models: a 100-tree RandomForest and a LogisticRegression on 20 float features. Load: wrk (Debian's;
installed with apt-get when missing), one thread, 1-row and 32-row bodies, ``BENCH_SECONDS`` (5) per
point after a warm-up, ``BENCH_ROUNDS`` (3) rounds. Every server of a model stays up for all rounds
and each round visits every point, the servers in a rotated order, so a busy spell of the machine
lands on all of them (the ten servers of a model together hold about 5 GiB). ``BENCH_MATRIX=quick``
(the default; about 17 minutes on 2 CPUs) loads 32 connections only, ``full`` 1, 8 and 32 (about
40 minutes). Also measured: start-up (launch → ready) and the memory of each server's process tree
after the load.

Printed: the lines starting with BENCH (median and min–max over the rounds; each family's best
configuration per point). Written: the results as JSON to ``$BENCH_OUT``, else into the test's
tmp folder; ``report.py`` renders README's serving table from it. Asserts only that every server
answers what the model's own ``predict`` says (also under concurrency, where servers batch) and
that no request failed.
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
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
import requests

from bench.peers import MLSERVER, ensure_peer
from bench.report import summarize, table_lines
from ferry.serving.config import available_cpus
from ferry_dev.processes import free_port
from ferry_dev.services import ensure_debian_packages

SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
MATRIX = os.environ.get("BENCH_MATRIX", "quick")
CONNECTIONS = {"quick": (32,), "full": (1, 8, 32)}[MATRIX]
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


@dataclass(frozen=True)
class Server:
    """One server configuration: ``kind`` (ferry, mlflow, mlserver), ``config`` as the table shows
    it, the protocols it is loaded on."""
    kind: str
    config: str
    protocols: tuple[str, ...]
    workers: int | str = 1
    batching: bool = False


SERVERS = (
    Server("ferry", "--workers 1", ("invocations", "v2")),
    Server("ferry", f"--workers auto ({available_cpus()})", ("invocations", "v2"), "auto"),
    Server("mlflow", "--workers 1", ("invocations",)),
    Server("mlflow", "--workers 2", ("invocations",), 2),
    *(Server("mlserver", f"parallel_workers={workers}" + (", batching" if batching else ""), ("v2",),
             workers, batching) for workers in (0, 1, 2) for batching in (False, True)),
)


@dataclass
class Running:
    server: Server
    process: subprocess.Popen
    url: str
    startup: float


def ensure_wrk() -> str:
    """Debian's wrk, installed with apt-get when missing (through the machine's own network: the
    test session runs in the harness's network namespace)."""
    ensure_debian_packages({"wrk": "wrk"})
    return shutil.which("wrk")


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
def models(tmp_path_factory) -> dict[str, Path]:
    """MLflow model folders by name; each also holds ``mlserver/model.joblib``, the same estimator."""
    import joblib
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
        (path / "mlserver").mkdir()
        joblib.dump(estimator, path / "mlserver" / "model.joblib")
        saved[name] = path
    return saved


def request_body(protocol: str, rows: np.ndarray) -> dict:
    if protocol == "invocations":
        return {"dataframe_split": {"columns": COLUMNS, "data": rows.tolist()}}
    return {"inputs": [{"name": "input-0", "shape": list(rows.shape), "datatype": "FP64",
                        "data": rows.reshape(-1).tolist()}]}


def predictions(protocol: str, answer: dict) -> list:
    if protocol == "invocations":
        return answer["predictions"]
    (output,) = answer["outputs"]
    return output["data"]


def endpoint(protocol: str, model_name: str) -> str:
    return "/invocations" if protocol == "invocations" else f"/v2/models/{model_name}/infer"


def bodies(folder: Path) -> dict[tuple[str, int], Path]:
    """The wrk bodies by (protocol, rows): the same numbers on both protocols."""
    found = {}
    for rows in ROWS:
        data = np.random.default_rng(7 + rows).normal(size=(rows, len(COLUMNS))) * 2
        for protocol in ("invocations", "v2"):
            path = folder / f"body-{protocol}-{rows}.json"
            path.write_text(json.dumps(request_body(protocol, data)))
            found[(protocol, rows)] = path
    return found


def mlserver_folder(server: Server, model_name: str, model: Path, folder: Path) -> Path:
    """MLServer's settings.json and model-settings.json for ``server``: its own ports, no debug
    (access) log, the scikit-learn runtime on the joblib file."""
    folder.mkdir()
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": free_port(), "grpc_port": free_port(),
        "metrics_port": free_port(), "parallel_workers": server.workers, "debug": False}))
    (folder / model_name).mkdir()
    batching = {"max_batch_size": 32, "max_batch_time": 0.005} if server.batching else {}
    (folder / model_name / "model-settings.json").write_text(json.dumps({
        "name": model_name, "implementation": "mlserver_sklearn.SKLearnModel", **batching,
        "parameters": {"uri": str(model / "mlserver" / "model.joblib")}}))
    return folder


def start(server: Server, model_name: str, model: Path, folder: Path, peer_bin: Path) -> Running:
    """Launch ``server`` on ``model`` and wait until it is ready (mlflow and ferry: ``/ping``;
    MLServer: its model's v2 ready)."""
    folder.mkdir()
    port, ready = free_port(), "/ping"
    if server.kind == "mlflow":
        argv = [str(BIN / "mlflow"), "models", "serve", "-m", str(model), "--env-manager", "local",
                "-h", "127.0.0.1", "-p", str(port), "--workers", str(server.workers)]
        path = BIN
    elif server.kind == "ferry":
        argv = [str(BIN / "ferry"), "serve", "--model-uri", str(model), "--host", "127.0.0.1",
                "--port", str(port), "--grpc-port", str(free_port()), "--workers", str(server.workers),
                "--model-name", model_name, "--log-level", "WARNING"]
        path = BIN
    else:
        settings = mlserver_folder(server, model_name, model, folder / "mlserver")
        port = json.loads((settings / "settings.json").read_text())["http_port"]
        argv, ready, path = [str(peer_bin / "mlserver"), "start", str(settings)], \
            f"/v2/models/{model_name}/ready", peer_bin
    # mlflow execs `uvicorn` from PATH
    env = {**os.environ, "PATH": f"{path}:{os.environ.get('PATH', '')}",
           "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    log = folder / "server.log"
    launched = time.monotonic()
    process = subprocess.Popen(argv, stdout=log.open("wb"), stderr=subprocess.STDOUT, env=env,
                               cwd=folder, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(f"{url}{ready}", process, log)
    except BaseException:
        stop(process)
        raise
    return Running(server, process, url, time.monotonic() - launched)


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-2000:]
        try:
            if requests.get(url, timeout=2).status_code == 200:
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
                          "-s", str(script), url], capture_output=True, text=True,
                         env={**os.environ, "BODY": str(body)}, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    count, duration_us, p50, p99, status_errors, socket_errors = map(int, line.split()[1:])
    return {"rps": count / (duration_us / 1e6), "p50_ms": p50 / 1000, "p99_ms": p99 / 1000,
            "errors": status_errors + socket_errors}


def check_answers(url: str, protocol: str, model_name: str, model, body_files: dict) -> int:
    """Every answer equals the model's own predict: each wrk body alone, then 64 distinct requests
    at once (which ferry and MLServer with adaptive batching batch); returns the rows compared."""
    import pandas as pd

    target = f"{url}{endpoint(protocol, model_name)}"

    def ask(rows: np.ndarray) -> list:
        response = requests.post(target, json=request_body(protocol, rows), timeout=60)
        assert response.status_code == 200, response.text
        return predictions(protocol, response.json())

    asked = [np.array(document["dataframe_split"]["data"]) for document in
             (json.loads(body_files[("invocations", rows)].read_text()) for rows in ROWS)]
    rng = np.random.default_rng(11)
    concurrent = [rng.normal(size=(int(rng.integers(1, 5)), len(COLUMNS))) * 2 for _ in range(64)]
    with ThreadPoolExecutor(32) as pool:
        answers = [ask(rows) for rows in asked] + list(pool.map(ask, concurrent))
    for rows, answer in zip(asked + concurrent, answers, strict=True):
        assert answer == model.predict(pd.DataFrame(rows, columns=COLUMNS)).tolist(), (target, rows)
    return sum(len(rows) for rows in asked + concurrent)


def rotated(items: list, turn: int) -> list:
    """``items`` starting at a different place each round, so no server always runs first."""
    shift = turn * len(items) // max(ROUNDS, 1) % len(items)
    return items[shift:] + items[:shift]


def bench_model(model_name: str, model_path: Path, folder: Path, tools: dict, document: dict) -> None:
    """Start every server on one model, check their answers, run the interleaved rounds, record."""
    import mlflow.pyfunc

    model = mlflow.pyfunc.load_model(str(model_path))
    running: list[Running] = []
    try:
        for server in SERVERS:
            handle = start(server, model_name, model_path, folder / f"{model_name}-{len(running)}",
                           tools["peer_bin"])
            running.append(handle)
            checked = sum(check_answers(handle.url, protocol, model_name, model, tools["bodies"])
                          for protocol in server.protocols)
            idle_rss, _ = tree_memory_mb(handle.process.pid)
            for protocol in server.protocols:  # warm-up
                wrk(tools["wrk"], tools["script"], tools["bodies"][(protocol, 1)],
                    f"{handle.url}{endpoint(protocol, model_name)}", 8, 2)
            print(f"BENCH serve model={model_name} server={server.kind} config={server.config!r} "
                  f"startup_s={handle.startup:.1f} rss_idle_mib={idle_rss:.0f} "
                  f"answers_checked_rows={checked}", flush=True)
            document["servers"].append({"model": model_name, "kind": server.kind, "config": server.config,
                                        "startup_s": handle.startup, "rss_idle_mib": idle_rss})
        combos = [(handle, protocol) for handle in running for protocol in handle.server.protocols]
        for turn in range(ROUNDS):
            for rows in ROWS:
                for connections in CONNECTIONS:
                    for handle, protocol in rotated(combos, turn):
                        server = handle.server
                        point = wrk(tools["wrk"], tools["script"], tools["bodies"][(protocol, rows)],
                                    f"{handle.url}{endpoint(protocol, model_name)}", connections, SECONDS)
                        assert point["errors"] == 0, (server, model_name, protocol, rows, connections, point)
                        document["runs"].append({"model": model_name, "kind": server.kind,
                                                 "config": server.config, "protocol": protocol,
                                                 "rows": rows, "connections": connections,
                                                 "round": turn + 1, **point})
                        print(f"BENCH serve round={turn + 1} model={model_name} server={server.kind} "
                              f"config={server.config!r} protocol={protocol} rows={rows} "
                              f"conns={connections} rps={point['rps']:.1f} p50_ms={point['p50_ms']:.1f} "
                              f"p99_ms={point['p99_ms']:.1f}", flush=True)
        for handle, entry in zip(running, [e for e in document["servers"] if e["model"] == model_name],
                                 strict=True):
            entry["rss_loaded_mib"], entry["uss_loaded_mib"] = tree_memory_mb(handle.process.pid)
    finally:
        for handle in running:
            stop(handle.process)


def test_bench_serving(models, tmp_path):
    script = tmp_path / "post.lua"
    script.write_text(WRK_SCRIPT)
    tools = {"wrk": ensure_wrk(), "peer_bin": ensure_peer(MLSERVER), "script": script,
             "bodies": bodies(tmp_path)}
    document = {
        "settings": {"seconds": SECONDS, "rounds": ROUNDS, "matrix": MATRIX, "rows": list(ROWS),
                     "connections": list(CONNECTIONS), "cpus": available_cpus(),
                     "load_average": os.getloadavg()[0],
                     "versions": {"mlflow": metadata.version("mlflow"),
                                  "scikit-learn": metadata.version("scikit-learn"),
                                  "mlserver": MLSERVER.version}},
        "servers": [], "runs": []}
    for model_name, model_path in models.items():
        bench_model(model_name, model_path, tmp_path, tools, document)
    document["points"] = summarize(document["runs"])
    out = Path(os.environ.get("BENCH_OUT") or tmp_path / "serving.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1))
    for line in table_lines(document):
        print(f"BENCH {line}")
    print(f"BENCH serve results: {out}")
