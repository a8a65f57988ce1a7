"""One bounded thread pool per external dependency.

The Kubernetes, MLflow and boto3 clients are synchronous; calling them on kopf's event loop would
freeze every watch. Separate pools keep a slow MLflow from starving Kubernetes calls.

A pool alone does not protect the reconcile workers: when MLflow is slow, every worker would queue
behind its few threads and new objects would wait for their first condition. So a pool may set an
admission wait (``mlflow_admission_seconds`` for MLflow): a call that finds every thread busy for
that long raises ``DependencyBusy`` and the worker is given back; the object is reconciled again
a moment later, level-triggered, with nothing lost.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

from ferry.config import OperatorConfig


class DependencyBusy(Exception):
    """Every thread of a dependency's pool stayed busy for the pool's admission wait."""

    def __init__(self, pool: str, waited: float) -> None:
        super().__init__(f"every {pool} thread stayed busy for {waited:g}s")
        self.pool = pool


class Executors:
    def __init__(self, config: OperatorConfig) -> None:
        sizes = {"kube": config.kube_workers, "mlflow": config.mlflow_workers,
                 "s3": config.s3_workers, "prometheus": config.prometheus_workers}
        self.pools = {name: ThreadPoolExecutor(size, thread_name_prefix=name)
                      for name, size in sizes.items()}
        self.slots = {name: asyncio.Semaphore(size) for name, size in sizes.items()}
        self.admission: dict[str, float | None] = {"mlflow": config.mlflow_admission_seconds}

    async def run(self, pool: str, fn, *args, **kwargs):
        """``fn`` on one of ``pool``'s threads; raises DependencyBusy past the admission wait."""
        limit = self.admission.get(pool)
        slots = self.slots[pool]
        try:
            await asyncio.wait_for(slots.acquire(), limit)
        except TimeoutError:
            raise DependencyBusy(pool, limit) from None
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.pools[pool],
                                              functools.partial(fn, *args, **kwargs))
        finally:
            slots.release()

    def shutdown(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
