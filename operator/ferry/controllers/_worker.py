"""The controller shape every kind shares: events enqueue, one worker per object reconciles.

kopf's create/update handlers are edge-triggered; Ferry's reconcile is level-triggered. So the only
thing the event handlers do is wake the object's worker (a kopf daemon): on creation and on
operator start (the daemon starts for every existing object, which is how resume happens), on a
spec change, and when one of its children changes (``children.py``). The worker then runs the
kind's idempotent ``reconcile`` and writes one status patch, and otherwise wakes every
``resync_seconds`` to notice drift in children or external systems nobody told it about.
Failures never escape the worker: they are logged, counted, posted as a Warning Event and retried
with exponential backoff.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import kopf

from ferry.adapters.kube import Kube
from ferry.adapters.s3 import ObjectStore
from ferry.api import GROUP, VERSION, KindInfo
from ferry.config import OperatorConfig
from ferry.observability.metrics import ACTIVE_WORKERS, PHASES, track_reconcile
from ferry.reconcilers.accept import accept
from ferry.reconcilers.outcome import Outcome

MAX_BACKOFF = 300.0


@dataclass
class Context:
    """Everything a reconcile may use, built once at startup and shared through kopf's memo."""

    config: OperatorConfig
    kube: Kube
    store: ObjectStore


Reconcile = Callable[[Context, kopf.Body], Awaitable[Outcome]]


class Wakeups:
    """Per-object wake-up flags keyed by uid."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}

    def _event(self, uid: str) -> asyncio.Event:
        return self._events.setdefault(uid, asyncio.Event())

    def wake(self, uid: str) -> None:
        self._event(uid).set()

    async def sleep(self, uid: str, timeout: float, stopped: kopf.DaemonStopped) -> None:
        """Return when woken, stopped or after ``timeout``, whichever comes first."""
        event = self._event(uid)
        waiters = [asyncio.ensure_future(event.wait()), asyncio.ensure_future(stopped.wait())]
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            event.clear()

    def forget(self, uid: str) -> None:
        self._events.pop(uid, None)


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
                         logger: logging.Logger, written: Written | None = None
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


def register(info: KindInfo, reconcile: Reconcile) -> None:
    """Wire ``reconcile`` for one kind into kopf."""
    resource = dict(group=GROUP, version=VERSION, plural=info.plural)

    @kopf.on.update(**resource, field="spec", id=f"{info.plural}.spec-changed")
    async def spec_changed(uid: str, memo: kopf.Memo, **_) -> None:
        memo.wakeups.wake(uid)

    @kopf.daemon(**resource, id=f"{info.plural}.worker", cancellation_timeout=30)
    async def worker(body: kopf.Body, uid: str, stopped: kopf.DaemonStopped, memo: kopf.Memo,
                     logger: logging.Logger, **_) -> None:
        ctx: Context = memo.ctx
        ACTIVE_WORKERS.labels(info.kind).inc()
        failures = 0
        written: Written | None = None
        try:
            while not stopped:
                delay = ctx.config.resync_seconds
                try:
                    outcome, written = await reconcile_once(info, reconcile, ctx, body, logger,
                                                            written)
                    failures = 0
                    delay = outcome.requeue_after or delay
                except asyncio.CancelledError:
                    raise
                except Exception as error:  # a bad object or a flaky dependency must not kill us
                    failures += 1
                    delay = backoff(failures, ctx.config.resync_seconds)
                    logger.exception("reconcile failed (attempt %d, retry in %.0fs)", failures, delay)
                    kopf.event(body, type="Warning", reason="ReconcileError",
                               message=f"{type(error).__name__}: {error}"[:1024])
                await memo.wakeups.sleep(uid, delay, stopped)
        finally:
            ACTIVE_WORKERS.labels(info.kind).dec()
            PHASES.forget(uid)
            memo.wakeups.forget(uid)


def accepting_reconcile(info: KindInfo) -> Reconcile:
    """A reconcile that validates the spec and reports Accepted, for kinds without a capability."""

    async def reconcile(ctx: Context, body: kopf.Body) -> Outcome:
        return accept(info, body)[1]

    return reconcile
