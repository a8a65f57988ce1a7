"""One bounded thread pool per external dependency.

The Kubernetes, MLflow and boto3 clients are synchronous; calling them on kopf's event loop would
freeze every watch. Separate pools keep a slow MLflow from starving Kubernetes calls.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from ferry.config import OperatorConfig


class Executors:
    def __init__(self, config: OperatorConfig) -> None:
        self.pools = {
            "kube": ThreadPoolExecutor(config.kube_workers, thread_name_prefix="kube"),
            "mlflow": ThreadPoolExecutor(config.mlflow_workers, thread_name_prefix="mlflow"),
            "s3": ThreadPoolExecutor(config.s3_workers, thread_name_prefix="s3"),
            "prometheus": ThreadPoolExecutor(config.prometheus_workers, thread_name_prefix="prom"),
        }

    async def run(self, pool: str, fn, *args, **kwargs):
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pools[pool], functools.partial(fn, *args, **kwargs))

    def shutdown(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
