"""Shadow mirroring without a gateway: forward a share of requests to a candidate server.

``offer`` runs on the request path and only puts (path, body, content type) in a bounded queue, or
counts a drop when it is full; a few worker tasks send them with their own HTTP session and read
and discard the answer. The client always gets the local model's answer, whatever the candidate
does. Results are counted in ``ferry_serve_mirrored_total{result=ok|error|dropped}``: ``ok`` is any
answer below 500, ``error`` a 5xx, a timeout or a connection failure. The request path is sent
unchanged, so a v2 request reaches ``/v2/models/<same name>/infer`` on the candidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping

from ferry.serving.sampling import Sampler

log = logging.getLogger(__name__)

FORWARDED = ("Content-Type", "Inference-Header-Content-Length")


class Mirror:
    def __init__(self, url: str, percent: float, queue_size: int, record: Callable[[str], None],
                 workers: int = 4, timeout_seconds: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.sampler = Sampler(percent / 100)
        self._queue: asyncio.Queue = asyncio.Queue(maxsize=queue_size)
        self._record = record
        self._workers = workers
        self._timeout = timeout_seconds
        self._tasks: list[asyncio.Task] = []
        self._session = None

    def start(self) -> None:
        import aiohttp

        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout))
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._work()) for _ in range(self._workers)]

    def offer(self, path: str, body: bytes, headers: Mapping[str, str]) -> bool:
        """Queue a copy of the request; its Content-Type and the binary tensor extension's
        Inference-Header-Content-Length go along."""
        if not self.sampler.take():
            return False
        forwarded = {name: headers[name] for name in FORWARDED if name in headers}
        forwarded.setdefault("Content-Type", "application/json")
        try:
            self._queue.put_nowait((path, body, forwarded))
        except asyncio.QueueFull:
            self._record("dropped")
            return False
        return True

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Give queued requests a moment to go out, then stop the workers."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), drain_seconds)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()

    async def _work(self) -> None:
        while True:
            path, body, headers = await self._queue.get()
            try:
                async with self._session.post(self.url + path, data=body,
                                              headers=headers) as response:
                    await response.read()
                    result = "ok" if response.status < 500 else "error"
            except Exception as error:  # noqa: BLE001 - the candidate's failure is only counted
                log.debug("mirroring to %s failed: %s", self.url, error)
                result = "error"
            finally:
                self._queue.task_done()
            self._record(result)
