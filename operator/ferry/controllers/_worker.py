"""The controller shape every kind shares: watch events fill a work queue, workers reconcile.

kopf's create/update handlers are edge-triggered and keep their diff base in an annotation; Ferry's
reconcile is level-triggered and needs neither. So, as in controller-runtime, one kopf *event*
handler per kind only records the object's latest body and queues its uid: when it is first seen
(creation, and every object on operator start, which is how resume happens), when its
``metadata.generation`` changes (a spec change), and when one of its children changes
(``children.py``). A fixed pool of workers takes uids off one queue, runs the kind's idempotent
``reconcile`` and writes one status patch; every object is queued again after ``requeue_after`` or
``resync_seconds`` to notice drift nobody told it about. A uid is in the queue at most once and held
by one worker at a time. One queue instead of a kopf daemon per object keeps memory flat: 1,000
objects cost their bodies, not 1,000 tasks. Failures never escape a worker: they are logged,
counted, posted as a Warning Event and retried with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import kopf

from ferry.adapters.executors import DependencyBusy
from ferry.adapters.kube import ChildRejected, Kube, NotLeading
from ferry.adapters.s3 import ObjectStore
from ferry.api import GROUP, VERSION, KindInfo
from ferry.config import OperatorConfig
from ferry.observability.metrics import PHASES, QUALITY, WORKQUEUE_DEPTH, track_reconcile
from ferry.reconcilers.accept import rejected
from ferry.reconcilers.outcome import Outcome

MAX_BACKOFF = 300.0
NOT_LEADING_RETRY_SECONDS = 1.0
BUSY_RETRY_SECONDS = 2.0
log = logging.getLogger("ferry.controllers")


@dataclass
class Context:
    """Everything a reconcile may use, built once at startup and shared through kopf's memo."""

    config: OperatorConfig
    kube: Kube
    store: ObjectStore


Reconcile = Callable[[Context, kopf.Body], Awaitable[Outcome]]
RECONCILERS: dict[str, Reconcile] = {}  # by kind, filled by ``register``


class ObjectLogger(logging.LoggerAdapter):
    """Log lines that name the object they are about."""

    def process(self, msg, kwargs):
        return f"{self.extra['kind']} {self.extra['object']}: {msg}", kwargs


class WorkQueue:
    """controller-runtime's work queue on one event loop.

    A key is queued at most once; a key added while a worker holds it is queued again when that
    worker is ``done`` (so a change during a reconcile is never lost, and one object is never
    reconciled twice at once); ``add_after`` keeps only the earliest pending due time, and ``add``
    supersedes it (every reconcile ends by scheduling its next one).
    """

    def __init__(self) -> None:
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._queued: set[str] = set()
        self._processing: set[str] = set()
        self._dirty: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def __len__(self) -> int:
        return len(self._queued)

    def add(self, key: str) -> None:
        self._cancel_timer(key)
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)
            WORKQUEUE_DEPTH.set(len(self._queued))

    def add_after(self, key: str, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        pending = self._timers.get(key)
        if pending is not None and pending.when() <= loop.time() + delay:
            return
        self._cancel_timer(key)
        self._timers[key] = loop.call_later(delay, self._fire, key)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    def _cancel_timer(self, key: str) -> None:
        if (timer := self._timers.pop(key, None)) is not None:
            timer.cancel()

    async def get(self) -> str:
        key = await self._ready.get()
        self._queued.discard(key)
        self._processing.add(key)
        WORKQUEUE_DEPTH.set(len(self._queued))
        return key

    def done(self, key: str) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def forget(self, key: str) -> None:
        """No more scheduled work for a deleted object (a queued copy is skipped by the worker)."""
        self._cancel_timer(key)
        self._dirty.discard(key)


def backoff(failures: int, resync: float) -> float:
    return resync if failures == 0 else min(2.0 ** (failures - 1), MAX_BACKOFF)


@dataclass
class Written:
    """The last status patch of one worker and the resourceVersion it produced."""

    status: dict
    resource_version: int


def current_status(body: Mapping, written: Written | None) -> dict:
    """The object's status as of our last write. Children's events can wake the worker again
    before the watch has delivered our own status patch; reconciling that stale body would
    repeat the patch and the Events of the same transition. Until the body catches up with the
    resourceVersion our patch produced, our written fields are laid over it."""
    status = dict(body.get("status") or {})
    version = (body.get("metadata") or {}).get("resourceVersion")
    if written is None or not str(version or "").isdigit() or int(version) >= \
            written.resource_version:
        return status
    return status | written.status


async def reconcile_once(info: KindInfo, reconcile: Reconcile, ctx: Context, body: kopf.Body,
                         logger: logging.LoggerAdapter, written: Written | None = None
                         ) -> tuple[Outcome, Written | None]:
    status = current_status(body, written)
    if status != (body.get("status") or {}):
        body = kopf.Body({**body, "status": status})
    with track_reconcile(info.kind):
        outcome = await reconcile(ctx, body)
        changes = outcome.status_changes(status)
        if changes:
            version = await ctx.kube.patch_status(info, body.metadata.namespace,
                                                  body.metadata.name, changes)
            if str(version or "").isdigit():
                written = Written(status | changes, int(version))
    for event in outcome.events:
        kopf.event(body, type=event.type, reason=event.reason, message=event.message)
        logger.info("%s: %s", event.reason, event.message)
    if phase := outcome.status.get("phase"):
        PHASES.set(body.metadata.uid, info.kind, phase)
    return outcome, written


@dataclass
class Tracked:
    """One watched object: its latest body and what its reconciles carry from one to the next."""

    info: KindInfo
    body: dict
    failures: int = 0
    written: Written | None = None


def needs_reconcile(previous: Mapping | None, body: Mapping) -> bool:
    """New to us, or its spec changed (a status or metadata change is not a reason)."""
    if previous is None:
        return True
    return (previous.get("metadata") or {}).get("generation") != \
        (body.get("metadata") or {}).get("generation")


class Controllers:
    """The watched objects of every kind, one work queue and the workers that drain it."""

    def __init__(self, workers: int = 16) -> None:
        self.queue = WorkQueue()
        self.objects: dict[str, Tracked] = {}
        self._workers = workers
        self._tasks: list[asyncio.Task] = []

    def observe(self, info: KindInfo, event_type: str | None, body: Mapping) -> None:
        """A watch event of a Ferry object (kopf's ``event`` handler)."""
        uid = body["metadata"]["uid"]
        if event_type == "DELETED" or body["metadata"].get("deletionTimestamp"):
            self.forget(uid)  # deletion handlers (kopf ``on.delete``) take over
            return
        tracked = self.objects.get(uid)
        if tracked is None:
            self.objects[uid] = Tracked(info, dict(body))
            self.queue.add(uid)
            return
        previous, tracked.body = tracked.body, dict(body)
        if needs_reconcile(previous, body):
            self.queue.add(uid)

    def wake(self, uid: str) -> None:
        """Reconcile now (a child changed, or something it depends on did)."""
        if uid in self.objects:
            self.queue.add(uid)

    def in_namespace(self, namespace: str) -> list[tuple[str, str, dict]]:
        """(uid, kind, latest body) of the watched objects in ``namespace``."""
        return [(uid, tracked.info.kind, tracked.body) for uid, tracked in self.objects.items()
                if (tracked.body.get("metadata") or {}).get("namespace") == namespace]

    def forget(self, uid: str) -> None:
        self.objects.pop(uid, None)
        self.queue.forget(uid)
        PHASES.forget(uid)
        QUALITY.forget(uid)

    def start(self, ctx: Context) -> None:
        """Start the workers once, from inside a kopf handler: they inherit its context, which
        ``kopf.event`` needs to post Events."""
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work(ctx), name=f"ferry-worker-{n}")
                           for n in range(self._workers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _work(self, ctx: Context) -> None:
        while True:
            uid = await self.queue.get()
            try:
                delay = await self._reconcile(ctx, uid)
                if delay is not None and uid in self.objects:
                    self.queue.add_after(uid, delay)
            finally:
                self.queue.done(uid)  # re-queues at once (dropping that timer) if it changed

    async def _reconcile(self, ctx: Context, uid: str) -> float | None:
        """Reconcile one object; the delay until its next reconcile (None: it is gone)."""
        tracked = self.objects.get(uid)
        if tracked is None:
            return None
        info, body = tracked.info, kopf.Body(tracked.body)
        logger = ObjectLogger(log, {"kind": info.kind, "object":
                                    f"{body.metadata.namespace}/{body.metadata.name}"})
        try:
            outcome, tracked.written = await reconcile_once(
                info, RECONCILERS[info.kind], ctx, body, logger, tracked.written)
        except asyncio.CancelledError:
            raise
        except NotLeading as error:  # the process stops soon (lost) or renews (a short lapse)
            logger.warning("not written: %s", error)
            return NOT_LEADING_RETRY_SECONDS
        except DependencyBusy as error:  # not a failure: no backoff, no Event, come again soon
            logger.debug("deferred: %s", error)
            return BUSY_RETRY_SECONDS
        except ChildRejected as error:  # the spec builds a child the apiserver refuses
            tracked.failures += 1
            delay = backoff(tracked.failures, ctx.config.resync_seconds)
            logger.warning("%s (retry in %.0fs)", error, delay)
            return await self._report_rejection(ctx, tracked, body, logger, str(error), delay)
        except Exception as error:  # a bad object or a flaky dependency must not kill us
            tracked.failures += 1
            delay = backoff(tracked.failures, ctx.config.resync_seconds)
            if tracked.failures == 1:  # the traceback once; retries of the same failure in a line
                logger.exception("reconcile failed (retry in %.0fs)", delay)
            else:
                logger.warning("reconcile failed again (attempt %d, retry in %.0fs): %s: %s",
                               tracked.failures, delay, type(error).__name__, str(error)[:500])
            kopf.event(body, type="Warning", reason="ReconcileError",
                       message=f"{type(error).__name__}: {error}"[:1024])
            return delay
        tracked.failures = 0
        return outcome.requeue_after or ctx.config.resync_seconds


    @staticmethod
    async def _report_rejection(ctx: Context, tracked: Tracked, body: kopf.Body,
                                logger: logging.LoggerAdapter, problem: str, delay: float) -> float:
        """Write ``Accepted=False`` with the apiserver's reason (and its Warning Event)."""

        async def refused(_ctx: Context, refused_body: kopf.Body) -> Outcome:
            return rejected(refused_body, problem)

        try:
            _, tracked.written = await reconcile_once(tracked.info, refused, ctx, body, logger,
                                                      tracked.written)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the retry reports it again
            logger.exception("could not report the refused child (retry in %.0fs)", delay)
        return delay


def register(info: KindInfo, reconcile: Reconcile) -> None:
    """Wire ``reconcile`` for one kind into kopf: an event handler that feeds the work queue."""
    RECONCILERS[info.kind] = reconcile

    @kopf.on.event(GROUP, VERSION, info.plural, id=f"{info.plural}.observe")
    async def observe(event: Mapping, body: kopf.Body, memo: kopf.Memo, **_) -> None:
        controllers: Controllers = memo.controllers
        controllers.start(memo.ctx)
        controllers.observe(info, event.get("type"), body)

