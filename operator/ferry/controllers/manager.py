"""The operator process: metrics/health server, leader election, then the kopf loop.

Only the Lease holder runs kopf (``standalone``: kopf's own peering is not used). Losing the Lease
stops the loop and exits non-zero, like client-go's leader election, so the pod restarts as a
standby instead of acting on stale leadership.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
import threading
import time

import kopf
from kubernetes import client

from ferry.adapters.executors import Executors
from ferry.adapters.kube import Kube, load_client_config
from ferry.adapters.s3 import ObjectStore
from ferry.config import OperatorConfig
from ferry.controllers import children, settings as kopf_settings
from ferry.controllers._worker import Context, Controllers
from ferry.leader import LeaderElector
from ferry.observability import logging as ferry_logging
from ferry.observability.metrics import EVENT_LOOP_LAG, LEADER
from ferry.observability.server import Health, serve

log = logging.getLogger("ferry.operator")

CONTROLLER_MODULES = (
    "ferry.controllers.featurepipeline",
    "ferry.controllers.trainingrun",
    "ferry.controllers.modelversion",
    "ferry.controllers.inferenceservice",
)
_registered = False


def register_controllers() -> None:
    global _registered
    if not _registered:
        for module in CONTROLLER_MODULES:
            importlib.import_module(module)
        children.register()
        _registered = True


async def _heartbeat(health: Health, interval: float = 1.0) -> None:
    """Tick the liveness heartbeat from the event loop and measure how late each tick runs."""
    while True:
        started = time.monotonic()
        await asyncio.sleep(interval)
        EVENT_LOOP_LAG.set(max(0.0, time.monotonic() - started - interval))
        health.beat()


def connection_info(kubeconfig: str | None) -> kopf.ConnectionInfo:
    """kopf's credentials from the same source as ours, loaded afresh on every (re-)login so a
    rotated service-account token is picked up."""
    loaded = load_client_config(kubeconfig)
    # "Bearer <token>" under "authorization" from a kubeconfig; "bearer <token>" under
    # "BearerToken" in-cluster (kubernetes.config.incluster_config)
    keys = loaded.api_key or {}
    token = (keys.get("authorization") or keys.get("BearerToken") or "").partition(" ")[2].strip()
    return kopf.ConnectionInfo(
        server=loaded.host,
        ca_path=loaded.ssl_ca_cert,
        insecure=not loaded.verify_ssl,
        certificate_path=loaded.cert_file,
        private_key_path=loaded.key_file,
        token=token or None,
    )


async def _operate(config: OperatorConfig, api_client: client.ApiClient, stop: threading.Event,
                   health: Health, kubeconfig: str | None, leading=lambda: True) -> None:
    executors = Executors(config)
    context = Context(config=config, kube=Kube(api_client, executors, leading),
                      store=ObjectStore(endpoint_url=config.s3_endpoint))
    controllers = Controllers(config.reconcile_workers)
    memo = kopf.Memo(ctx=context, controllers=controllers)
    register_controllers()

    @kopf.on.startup()
    async def configure(settings: kopf.OperatorSettings, **_) -> None:
        kopf_settings.configure(settings, config.kube_workers)

    @kopf.on.cleanup()
    async def stop_workers(**_) -> None:
        await controllers.stop()

    @kopf.on.login()
    def login(**_) -> kopf.ConnectionInfo:
        return connection_info(kubeconfig)

    heartbeat = asyncio.create_task(_heartbeat(health))
    try:
        # kopf.operator() is spawn_tasks + run_tasks; split here because spawn_tasks gives SIGTERM
        # and SIGINT to kopf's own flag, which stops kopf but not Ferry's: the Lease would only be
        # handed over once kopf had wound down (seconds under load). Signals set Ferry's flag
        # instead, which kopf stops on too.
        existing = set(asyncio.all_tasks())
        tasks = await kopf.spawn_tasks(
            standalone=True,
            clusterwide=not config.namespaces,
            namespaces=config.namespaces,
            stop_flag=stop,
            memo=memo,
            # kopf would derive it from the login name, which an image's numeric USER without a
            # passwd entry (65532 here, random uids on OpenShift) does not have: it crashes.
            identity=f"ferry@{socket.gethostname()}/{os.getpid()}",
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await kopf.run_tasks(tasks, ignored=existing)
    finally:
        stop.set()  # kopf may have stopped on its own (a root task failed): release its flag waiter
        heartbeat.cancel()
        executors.shutdown()


def run(config: OperatorConfig, kubeconfig: str | None = None) -> int:
    ferry_logging.configure(config.log_level, config.log_format)
    api_client = client.ApiClient(load_client_config(kubeconfig, config.kube_workers))
    health = Health()
    server = serve(health, config.metrics_host, config.metrics_port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    health.ready = True
    log.info("starting", extra={"identity": config.identity,
                                "namespaces": config.namespaces or "all"})

    elector = None
    if config.leader_election:
        elector = LeaderElector(
            client.CoordinationV1Api(api_client), config.lease_name, config.lease_namespace,
            config.identity, config.lease_duration_seconds, config.renew_deadline_seconds,
            config.retry_period_seconds, on_tick=health.beat)
        if not elector.acquire(stop):
            server.shutdown()
            return 0
        LEADER.set(1)
        threading.Thread(target=elector.keep_renewing, args=(stop,), daemon=True).start()
        # Losing the Lease stops the kopf loop through the same flag as a signal does.
        threading.Thread(target=lambda: elector.lost.wait() and stop.set(), daemon=True).start()
        # A clean stop hands over at once, while kopf is still winding down (its writes are
        # fenced from then on), instead of after it.
        handover = threading.Thread(
            target=lambda: stop.wait() and not elector.lost.is_set() and elector.release())
        handover.start()
    try:
        asyncio.run(_operate(config, api_client, stop, health, kubeconfig,
                             elector.leading if elector else (lambda: True)))
    finally:
        stop.set()
        LEADER.set(0)
        if elector is not None:
            handover.join(30)
        server.shutdown()
    return 1 if elector is not None and elector.lost.is_set() else 0
