"""/metrics, /healthz and /readyz on one port, served from a thread.

Liveness is a heartbeat: the operator's event loop (or, on a standby replica, the leader-election
loop) must tick regularly, so a stuck loop turns into a restart instead of a silent outage.
Readiness means the process is up and has a Kubernetes connection; standby replicas are ready too.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ferry.observability.metrics import REGISTRY


class Health:
    def __init__(self, stale_after: float = 60.0) -> None:
        self.stale_after = stale_after
        self._last_beat = time.monotonic()
        self.ready = False

    def beat(self) -> None:
        self._last_beat = time.monotonic()

    def alive(self) -> bool:
        return time.monotonic() - self._last_beat < self.stale_after


def serve(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.startswith("/metrics"):
                self._reply(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                ok = health.alive()
                self._reply(200 if ok else 503, b"ok\n" if ok else b"event loop stalled\n")
            elif self.path.startswith("/readyz"):
                self._reply(200 if health.ready else 503, b"ok\n" if health.ready else b"starting\n")
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # scrapes every few seconds must not flood the logs
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
