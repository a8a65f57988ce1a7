"""Leader election on a coordination.k8s.io Lease, the way client-go does it.

kopf's peering pauses every replica when priorities are equal and has no fencing, so Ferry elects a
leader before the kopf loop starts: only the Lease holder runs handlers. A standby replica polls
the Lease and takes over once the holder has not renewed it for ``leaseDurationSeconds``, measured
on the standby's own clock from when it last saw the record change (immune to clock skew). The
holder exits when it cannot renew within the renew deadline, and releases the Lease on a clean
shutdown so a successor takes over at once.

Fencing: ``leading()`` is True only while the last successful renewal is younger than the renew
deadline on this replica's monotonic clock. A holder that was paused (SIGSTOP, a frozen VM) past
the deadline wakes up with ``leading()`` False, before its renew loop has even run, and the Kube
adapter refuses its writes; so a successor that took over meanwhile is never written against.
Releasing closes the fence first.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, UTC

from kubernetes import client
from kubernetes.client.rest import ApiException

log = logging.getLogger("ferry.leader")


def _micro_time(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Observation:
    """The last Lease record seen and when (monotonic clock of this replica)."""

    record: tuple | None = None
    seen_at: float = 0.0

    def observe(self, spec: dict | None, monotonic_now: float) -> None:
        record = None if spec is None else (
            spec.get("holderIdentity"), spec.get("renewTime"), spec.get("leaseTransitions"))
        if record != self.record:
            self.record, self.seen_at = record, monotonic_now


def desired_lease(spec: dict | None, identity: str, observation: Observation,
                  monotonic_now: float, wall_now: datetime, duration: float) -> dict | None:
    """The Lease spec to write to acquire or renew leadership, or None while another holds it."""
    holder = (spec or {}).get("holderIdentity") or ""
    held_by_other = holder not in ("", identity) and (
        monotonic_now - observation.seen_at < (spec or {}).get("leaseDurationSeconds", duration))
    if held_by_other:
        return None
    stamp = _micro_time(wall_now)
    transitions = (spec or {}).get("leaseTransitions") or 0
    if holder == identity:
        return {**spec, "renewTime": stamp}
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": int(duration),
        "acquireTime": stamp,
        "renewTime": stamp,
        "leaseTransitions": transitions + (1 if holder else 0),
    }


class LeaderElector:
    def __init__(self, api: client.CoordinationV1Api, name: str, namespace: str, identity: str,
                 duration: float = 15, renew_deadline: float = 10, retry_period: float = 2,
                 on_tick=lambda: None) -> None:
        self.api, self.name, self.namespace, self.identity = api, name, namespace, identity
        self.duration, self.renew_deadline, self.retry_period = duration, renew_deadline, retry_period
        self.on_tick = on_tick
        self.observation = Observation()
        self.lost = threading.Event()
        self.renewed_at: float | None = None  # monotonic time of the last successful write
        self.released = threading.Event()  # once set, this replica never acquires again

    def leading(self) -> bool:
        """May this replica act now? (See the module's note on fencing.)"""
        renewed = self.renewed_at
        return renewed is not None and time.monotonic() - renewed < self.renew_deadline

    def try_acquire_or_renew(self) -> bool:
        if self.released.is_set():
            return False
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            spec = self.api.api_client.sanitize_for_serialization(lease.spec) or {}
        except ApiException as error:
            if error.status != 404:
                raise
            lease, spec = None, None
        self.observation.observe(spec, time.monotonic())
        desired = desired_lease(spec, self.identity, self.observation, time.monotonic(),
                                datetime.now(UTC), self.duration)
        if desired is None:
            return False
        body = {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": desired}
        try:
            if lease is None:
                self.api.create_namespaced_lease(self.namespace, body)
            else:
                # resourceVersion makes the write conditional: two candidates cannot both win.
                body["metadata"]["resourceVersion"] = lease.metadata.resource_version
                self.api.replace_namespaced_lease(self.name, self.namespace, body)
        except ApiException as error:
            if error.status in (409, 422):
                return False
            raise
        self.observation.observe(desired, time.monotonic())
        self.renewed_at = time.monotonic()
        return True

    def acquire(self, stop: threading.Event) -> bool:
        """Block until this replica leads (True) or ``stop`` is set (False)."""
        log.info("waiting for leadership", extra={"lease": f"{self.namespace}/{self.name}"})
        while not stop.is_set():
            self.on_tick()
            try:
                if self.try_acquire_or_renew():
                    log.info("became leader", extra={"identity": self.identity})
                    return True
            except Exception as error:  # the apiserver may be briefly unavailable
                log.warning("leader election attempt failed: %s", error)
            stop.wait(self.retry_period)
        return False

    def keep_renewing(self, stop: threading.Event) -> None:
        """Renew until ``stop``; set ``lost`` when no renewal succeeded within the deadline."""
        last_renewed = time.monotonic()
        while not stop.wait(self.retry_period):
            try:
                if self.try_acquire_or_renew():
                    last_renewed = time.monotonic()
            except Exception as error:
                log.warning("lease renewal failed: %s", error)
            if time.monotonic() - last_renewed > self.renew_deadline:
                log.error("lost leadership: no renewal within %ss", self.renew_deadline)
                self.lost.set()
                return

    def release(self) -> None:
        """Stop acting, then hand the Lease over (a standby takes it at its next poll)."""
        self.released.set()
        self.renewed_at = None
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
            if lease.spec.holder_identity != self.identity:
                return
            lease.spec.holder_identity = None
            lease.spec.lease_duration_seconds = 1
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
            log.info("released leadership")
        except Exception as error:
            log.warning("could not release the lease: %s", error)
