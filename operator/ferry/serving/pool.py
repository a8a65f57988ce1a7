"""``ferry serve`` with several worker processes (FERRY_WORKERS > 1): throughput beyond one core.

Why processes sharing the ports (SO_REUSEPORT) and not an inference pool behind one front end:
parsing, encoding and the HTTP stack cost as much as a small model's predict, so a single front
process would stay the bottleneck; with the kernel spreading connections over N complete servers
nothing is serialised and no request pays an extra hop.

How: the model is loaded once, then the process forks N-1 workers and serves as worker 0 itself.
The model, scikit-learn and numpy are shared copy-on-write (``model.release_memory`` freezes the
loaded objects out of the garbage collector so their pages stay shared). Each worker has its own
event loop, batcher (requests are batched per worker), mirror queue and prediction log; log files
carry the worker index in their names (``<version>-<host>-w<i>-...``) so no two processes ever
write the same object. Metrics go to memory-mapped files in PROMETHEUS_MULTIPROC_DIR (a fresh
folder unless set), and every worker's ``/metrics`` answers the sum over all workers.

Unlike one process, the ports open once the model is loaded (the pod turns ready then too). A
worker that dies stops the whole pool with exit status 1, so the kubelet restarts the container
rather than serving on with less capacity than the Deployment was sized for.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import tempfile

from ferry.serving import model as model_loader
from ferry.serving.config import ServeConfig

log = logging.getLogger("ferry.serve")


def prepare_metrics_folder() -> str:
    """PROMETHEUS_MULTIPROC_DIR for this pool: emptied of a previous run's files, or created."""
    from prometheus_client import values

    folder = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if folder:
        os.makedirs(folder, exist_ok=True)
        for stale in glob.glob(os.path.join(folder, "*.db")):
            os.remove(stale)
    else:
        folder = tempfile.mkdtemp(prefix="ferry-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    # prometheus_client picks its value storage when it is first imported; switch it now.
    values.ValueClass = values.MultiProcessValue()
    return folder


def run_pool(config: ServeConfig, loader=model_loader.load) -> int:
    from ferry.serving.server import Server, serve

    prepare_metrics_folder()
    try:
        loaded = loader(config.model_uri)
    except Exception as error:  # noqa: BLE001 - reported, then the process exits 1
        log.error("could not load model %s: %s", config.model_uri, error)
        return 1

    def preloaded(uri: str):
        return loaded

    siblings = []
    for index in range(1, config.workers):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = asyncio.run(serve(config, Server(config, preloaded, worker=index)))
            except BaseException:  # noqa: BLE001 - a worker must never return into the parent's code
                log.exception("worker %d failed", index)
            finally:
                os._exit(code)
        siblings.append(pid)
    log.info("serving with %d worker processes", config.workers)
    return asyncio.run(serve(config, Server(config, preloaded, worker=0), tuple(siblings)))
