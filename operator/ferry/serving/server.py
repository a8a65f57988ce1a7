"""The HTTP shell of ``ferry serve`` (aiohttp): routes, lifecycle, graceful shutdown.

Why this shape: aiohttp's C HTTP parser and one event loop keep per-request overhead far below a
thread-per-request stack; parsing is orjson + numpy; ``predict`` runs in one worker thread fed by
the ``Batcher``, so the loop stays responsive and concurrent requests share predict calls.

Lifecycle: the port opens first and the model loads in the background, so liveness answers at once
and readiness (``/ping``, ``/health``, ``/v2/health/ready``) turns 200 only once the model is loaded;
a load failure exits 1. SIGTERM/SIGINT: readiness turns 503 (predictions are still answered, with
``Connection: close``), after FERRY_SHUTDOWN_DELAY_SECONDS (default 0 here; the operator sets a few
seconds so Service endpoints drop the pod first, like a preStop sleep) the listener closes,
in-flight requests finish (up to FERRY_SHUTDOWN_TIMEOUT_SECONDS), queued mirror requests get a
moment to go out, the prediction log is flushed, and the process exits 0.

Explanations (``POST /v2/models/{name}[/versions/{v}]/explain``, ``ferry.serving.explain``) run in
the same predict thread, so the model is never called concurrently; they are neither mirrored nor
logged, and do not feed the prediction-value histogram (their model calls are not traffic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from ferry.serving import feedback, ids
from ferry.serving import model as model_loader
from ferry.serving.batching import Batcher
from ferry.serving.config import ServeConfig
from ferry.serving.explain import Explainer, ExplainError, estimator_of, options
from ferry.serving.metrics import ServeMetrics
from ferry.serving.mirror import Mirror
from ferry.serving.outputs import (UnknownOutput, dumps, first_numeric, invocations_json, v2_arrays,
                                   v2_rest_answer)
from ferry.serving.payload import PayloadError, parse_invocations, parse_v2_infer
from ferry.serving.predlog import PredictionLog

log = logging.getLogger("ferry.serve")

MAX_BODY_BYTES = 64 * 1024 * 1024
HEADER_LENGTH = "Inference-Header-Content-Length"


def classify(error: BaseException) -> tuple[int, str]:
    """HTTP status and message for an exception raised by ``predict``.

    MLflow raises ``MlflowException`` with INVALID_PARAMETER_VALUE/BAD_REQUEST when the input does
    not match the signature (missing column, wrong type): that is the client's fault → 400.
    Anything else is the model's failure → 500.
    """
    code = getattr(error, "error_code", None)
    if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST"):
        return 400, f"the input does not match the model's signature: {getattr(error, 'message', error)}"
    return 500, f"the model failed: {type(error).__name__}: {error}"


class Server:
    """State shared by the handlers; built from a ``ServeConfig``."""

    def __init__(self, config: ServeConfig, loader=model_loader.load, worker: int | None = None) -> None:
        """``worker``: this process's index in a pool (names its prediction log files)."""
        self.config = config
        self.loader = loader
        self.metrics = ServeMetrics(config.model_name, config.model_version, config.prediction_buckets)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self.model: model_loader.LoadedModel | None = None
        self.explainer: Explainer | None = None
        self.batcher: Batcher | None = None
        self.draining = False
        self.load_error: BaseException | None = None
        self.prediction_log = None
        self.labels = None
        hostname = socket.gethostname() + (f"-w{worker}" if worker is not None else "")
        if config.prediction_log_uri:
            self.labels = feedback.LabelWriter(config.prediction_log_uri, hostname)
            self.prediction_log = PredictionLog(
                config.prediction_log_uri, config.model_version, hostname,
                sample_rate=config.prediction_sample_rate,
                batch_rows=config.prediction_log_batch_rows,
                flush_seconds=config.prediction_log_flush_seconds,
                max_rows=config.prediction_log_max_rows,
                on_written=self.metrics.log_rows.inc, on_dropped=self.metrics.log_dropped.inc)
        self.mirror = None
        if config.mirror_url and config.mirror_percent > 0:
            self.mirror = Mirror(config.mirror_url, config.mirror_percent, config.mirror_queue_size,
                                 self.metrics.mirrored)

    @property
    def ready(self) -> bool:
        return self.model is not None and not self.draining

    # -- lifecycle ---------------------------------------------------------------------------

    async def load(self) -> None:
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            loaded = await loop.run_in_executor(self.executor, self.loader, self.config.model_uri)
        except Exception as error:  # noqa: BLE001 - reported, then the process exits 1
            self.load_error = error
            log.error("could not load model %s: %s", self.config.model_uri, error)
            raise
        self.batcher = Batcher(loaded.predict, self.executor, self.config.max_batch_rows,
                               on_batch=self.metrics.batch_rows.observe)
        self.batcher.start()
        if self.prediction_log:
            self.prediction_log.probabilities = loaded.probabilities
        self.model = loaded
        log.info("model %s version %s loaded from %s in %.1fs", self.config.model_name,
                 self.config.model_version, self.config.model_uri, time.monotonic() - started)

    def start_background(self) -> None:
        if self.prediction_log:
            self.prediction_log.start()
        if self.mirror:
            self.mirror.start()

    async def stop_background(self) -> None:
        if self.batcher:
            await self.batcher.stop()
        if self.mirror:
            await self.mirror.stop()
        if self.prediction_log:
            await asyncio.get_running_loop().run_in_executor(None, self.prediction_log.close)
        self.executor.shutdown(wait=False, cancel_futures=True)

    # -- handlers ----------------------------------------------------------------------------

    async def invocations(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.mirror:
            self.mirror.offer(request.path, body, request.headers)
        if self.model is None:
            return _error_json(503, "the model is not loaded yet")
        try:
            frame = parse_invocations(body, request.headers.get("Content-Type"), self.model.inputs)
            frame, given = ids.take(frame, self.config.id_column, self.model.inputs)
        except PayloadError as error:
            return _error_json(400, str(error))
        row_ids = given or ids.generate(frame.rows)
        output, failure = await self.predict(frame, row_ids)
        if failure:
            return _error_json(*failure)
        return web.Response(body=invocations_json(output, row_ids), content_type="application/json",
                            headers=ids.header(row_ids))

    def parse_v2(self, request: web.Request, body: bytes):
        """The OIP request for the served model, or the error answer (404 another model, 503 not
        loaded yet, 400 a bad body)."""
        unknown = self.unknown_model(request.match_info.get("name"), request.match_info.get("version"))
        if unknown:
            return _v2_error(404, unknown)
        if self.model is None:
            return _v2_error(503, "the model is not loaded yet")
        try:
            return parse_v2_infer(body, self.model.inputs, _header_length(request.headers))
        except PayloadError as error:
            return _v2_error(400, str(error))

    async def v2_infer(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.mirror:
            self.mirror.offer(request.path, body, request.headers)
        parsed = self.parse_v2(request, body)
        if isinstance(parsed, web.Response):
            return parsed
        try:
            frame, given = ids.take(parsed.frame, self.config.id_column, self.model.inputs)
            row_ids = ids.v2_ids(parsed.ids, given, parsed.id, frame.rows)
        except PayloadError as error:
            return _v2_error(400, str(error))
        output, failure = await self.predict(frame, row_ids)
        if failure:
            return _v2_error(*failure)
        head = {**self.v2_head(parsed.id), "parameters": {"ids": row_ids}}
        try:
            answer, header_length = v2_rest_answer(head, v2_arrays(output), parsed.outputs,
                                                   parsed.binary_output)
        except UnknownOutput as error:
            return _v2_error(400, str(error))
        if header_length is None:
            return web.Response(body=answer, content_type="application/json", headers=ids.header(row_ids))
        return web.Response(body=answer, content_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(header_length), **ids.header(row_ids)})

    async def v2_explain(self, request: web.Request) -> web.Response:
        """Per-row feature attributions as an OIP answer: outputs ``attributions`` (FP64,
        [rows, features], in the order of ``parameters.feature_names``), ``base_value`` (FP64,
        [rows]) and ``value`` (FP64, [rows]: the explained output, base_value + the row's sum);
        ``parameters`` also name the ``method`` and the explained ``output``. The body is an OIP
        infer request; its parameters may add ``target``, ``background``, ``max_evals``, ``seed``."""
        parsed = self.parse_v2(request, await request.read())
        if isinstance(parsed, web.Response):
            return parsed
        try:
            opts, parsed.frame.params = options(parsed.frame.params)
        except ExplainError as error:
            return _v2_error(400, str(error))
        try:
            found = await asyncio.get_running_loop().run_in_executor(
                self.executor, self.explain_frame, parsed.frame, opts)
        except ExplainError as error:
            return _v2_error(400, str(error))
        except Exception as error:  # noqa: BLE001 - classified into 400/500 for the client
            status, message = classify(error)
            if status == 500:
                log.warning("explanation failed: %s", message)
            return _v2_error(status, message)
        head = {**self.v2_head(parsed.id), "parameters": {
            "feature_names": list(found.feature_names), "method": found.method, "output": found.output,
            **({"evaluations": found.evaluations} if found.method == "kernel" else {})}}
        arrays = [("attributions", found.attributions), ("base_value", found.base_values),
                  ("value", found.values)]
        try:
            answer, header_length = v2_rest_answer(head, arrays, parsed.outputs, parsed.binary_output)
        except UnknownOutput as error:
            return _v2_error(400, str(error))
        if header_length is None:
            return web.Response(body=answer, content_type="application/json")
        return web.Response(body=answer, content_type="application/octet-stream",
                            headers={HEADER_LENGTH: str(header_length)})

    def explain_frame(self, frame, opts):
        """In the predict thread: the explainer is built on first use (trees are flattened once)."""
        if self.explainer is None:
            self.explainer = Explainer(self.model.inputs, self.model.predict,
                                       estimator_of(self.model.pyfunc), self.model.example)
        return self.explainer.explain(frame, opts)

    def v2_head(self, request_id: str | None) -> dict:
        head = {"model_name": self.config.model_name, "model_version": self.config.model_version}
        if request_id:
            head["id"] = request_id
        return head

    async def predict(self, frame, row_ids: list[str] | None = None):
        """(output, None) or (None, (status, message)); feeds the log (with the rows' prediction
        ids; None: the log generates them) and the value histogram."""
        try:
            output = await self.batcher.predict(frame)
        except Exception as error:  # noqa: BLE001 - classified into 400/500 for the client
            status, message = classify(error)
            if status == 500:
                log.warning("%s", message)
            return None, (status, message)
        values = first_numeric(output)
        if values is not None:
            self.metrics.prediction_value.observe_many(values)
        if self.prediction_log:
            self.prediction_log.offer(frame, output, row_ids)
        return output, None

    async def feedback(self, request: web.Request) -> web.Response:
        """Labels for earlier predictions (``feedback``), stored before the answer says so."""
        unknown = self.unknown_model(request.match_info.get("name"), None)
        if unknown:
            return _v2_error(404, unknown)
        if self.labels is None:
            return _v2_error(409, "feedback needs the prediction log: this server has no "
                                  "FERRY_PREDICTION_LOG_URI (set the InferenceService's predictionLogging)")
        body, now_ms = await request.read(), int(time.time() * 1000)
        loop = asyncio.get_running_loop()  # a big batch is parsed and written off the event loop
        try:
            table = await loop.run_in_executor(None, feedback.parse_feedback, body, now_ms)
        except feedback.FeedbackError as error:
            return _v2_error(400, str(error))
        try:
            await loop.run_in_executor(None, self.labels.write, table, now_ms)
        except Exception as error:  # noqa: BLE001 - nothing was stored; the client retries
            log.warning("feedback: %d labels could not be stored: %s", table.num_rows, error)
            return _v2_error(503, f"the labels could not be stored, retry: {error}")
        return web.json_response({"accepted": table.num_rows})

    def unknown_model(self, name: str | None, version: str | None) -> str | None:
        """Why a v2 request for ``name``/``version`` cannot be answered here, or None."""
        if name != self.config.model_name:
            return (f"model {name!r} is not served here; this server serves "
                    f"{self.config.model_name!r}")
        if version and version != self.config.model_version:
            return (f"version {version!r} of {name!r} is not served here; this server serves "
                    f"version {self.config.model_version!r}")
        return None

    async def ping(self, request: web.Request) -> web.Response:
        if self.ready:
            return web.Response(text="\n")
        return web.Response(status=503, text="not ready\n")

    async def version(self, request: web.Request) -> web.Response:
        from importlib.metadata import version

        return web.json_response({"ferry": version("ferry-operator"), "mlflow": version("mlflow"),
                                  "model": self.config.model_name,
                                  "model_version": self.config.model_version})

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"live": True})

    async def v2_ready(self, request: web.Request) -> web.Response:
        return web.json_response({"ready": self.ready}, status=200 if self.ready else 503)

    async def v2_model_ready(self, request: web.Request) -> web.Response:
        unknown = self.unknown_model(request.match_info.get("name"), request.match_info.get("version"))
        if unknown:
            return _v2_error(404, unknown)
        return web.json_response({"name": self.config.model_name, "ready": self.ready},
                                 status=200 if self.ready else 503)

    async def v2_server(self, request: web.Request) -> web.Response:
        return web.json_response(self.server_metadata())

    @staticmethod
    def server_metadata() -> dict:
        from importlib.metadata import version

        return {"name": "ferry", "version": version("ferry-operator"),
                "extensions": ["binary_tensor_data"]}

    async def v2_model(self, request: web.Request) -> web.Response:
        unknown = self.unknown_model(request.match_info.get("name"), request.match_info.get("version"))
        if unknown:
            return _v2_error(404, unknown)
        if not self.ready:
            return _v2_error(503, "the model is not loaded yet")
        return web.json_response(self.model_metadata())

    def model_metadata(self) -> dict:
        return {"name": self.config.model_name, "versions": [self.config.model_version],
                "platform": "mlflow", "inputs": self.model.signature_inputs,
                "outputs": self.model.signature_outputs}

    async def prometheus(self, request: web.Request) -> web.Response:
        response = web.Response(body=self.metrics.exposition())
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response

    @web.middleware
    async def observe(self, request: web.Request, handler):
        """Request count, latency and in-flight gauge, labelled by the route template; while
        draining, the answer closes its connection."""
        started = time.perf_counter()
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        self.metrics.inflight.inc()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            if self.draining:
                # Connection: close, so a keep-alive client opens its next connection through the
                # Service, which no longer lists this pod, instead of reusing one about to close.
                response.force_close()
            return response
        except web.HTTPException as error:
            status = error.status
            raise
        except Exception:  # noqa: BLE001 - a handler bug is answered 500, never crashes the server
            log.exception("unexpected error on %s", request.path)
            return _error_json(500, "internal error")
        finally:
            self.metrics.inflight.dec()
            self.metrics.request(route, status, time.perf_counter() - started)

    def app(self) -> web.Application:
        application = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self.observe])
        application.add_routes([
            web.post("/invocations", self.invocations),
            web.get("/ping", self.ping),
            web.get("/health", self.ping),
            web.get("/version", self.version),
            web.get("/metrics", self.prometheus),
            web.get("/v2", self.v2_server),
            web.get("/v2/health/live", self.live),
            web.get("/v2/health/ready", self.v2_ready),
            web.get("/v2/models/{name}", self.v2_model),
            web.get("/v2/models/{name}/ready", self.v2_model_ready),
            web.post("/v2/models/{name}/infer", self.v2_infer),
            web.post("/v2/models/{name}/versions/{version}/infer", self.v2_infer),
            web.post("/v2/models/{name}/explain", self.v2_explain),
            web.post("/v2/models/{name}/versions/{version}/explain", self.v2_explain),
            web.post("/v2/models/{name}/feedback", self.feedback),
        ])
        return application


def _error_json(status: int, message: str) -> web.Response:
    code = {400: "BAD_REQUEST", 404: "NOT_FOUND", 503: "UNAVAILABLE"}.get(status, "INTERNAL_ERROR")
    return web.Response(status=status, body=dumps({"error_code": code, "message": message}),
                        content_type="application/json")


def _header_length(headers) -> int | None:
    raw = headers.get(HEADER_LENGTH)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise PayloadError(f"{HEADER_LENGTH} must be a number of bytes, got {raw!r}") from None


def _v2_error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=dumps({"error": message}), content_type="application/json")


async def serve(config: ServeConfig, server: Server | None = None,
                siblings: tuple[int, ...] = ()) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code.

    ``siblings``: the pids of the other workers of a pool (this process is worker 0). They get the
    same signals; if one exits on its own, this process stops too and exits 1, so the pod restarts.
    """
    server = server or Server(config)
    runner = web.AppRunner(server.app(), handle_signals=False, access_log=None,
                           shutdown_timeout=config.shutdown_timeout_seconds)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, backlog=2048, reuse_address=True,
                       reuse_port=config.workers > 1)
    await site.start()
    grpc_listener = None
    if config.grpc_port:
        from ferry.serving import grpc_service

        grpc_listener = await grpc_service.start(server, config.host, config.grpc_port)
    log.info("ferry serve listening on %s:%d (gRPC %s) for %s", config.host, config.port,
             config.grpc_port or "off", config.model_uri)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    pool = Siblings(siblings, stop)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, pool.forward_and_stop, signum)
    if siblings:
        loop.add_signal_handler(signal.SIGCHLD, pool.reap)
    server.start_background()
    loading = loop.create_task(server.load())
    stopping = loop.create_task(stop.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    failed = loading.done() and loading.exception() is not None
    if not failed:
        await stopping
    pool.forward_and_stop(signal.SIGTERM)
    server.draining = True
    if not failed and config.shutdown_delay_seconds:
        log.info("SIGTERM: not ready; serving %.0fs more until endpoints are updated",
                 config.shutdown_delay_seconds)
        await asyncio.sleep(config.shutdown_delay_seconds)
    log.info("shutting down: draining in-flight requests")
    if grpc_listener is not None:
        await grpc_listener.stop(config.shutdown_timeout_seconds)
    await runner.cleanup()
    if not loading.done():
        loading.cancel()
    await server.stop_background()
    failed = not await loop.run_in_executor(
        None, pool.wait, config.shutdown_timeout_seconds + config.shutdown_delay_seconds + 30) or failed
    log.info("stopped")
    return 1 if failed or pool.crashed else 0


class Siblings:
    """The other worker processes of a pool, seen from worker 0 (their parent)."""

    def __init__(self, pids: tuple[int, ...], stop: asyncio.Event) -> None:
        self.running = set(pids)
        self.stop = stop
        self.crashed = False
        self._forwarded = False

    def forward_and_stop(self, signum: int) -> None:
        if not self._forwarded:
            self._forwarded = True
            for pid in self.running:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)
        self.stop.set()

    def reap(self) -> None:
        """SIGCHLD: a worker that exits before shutdown is a crash; stop the pool."""
        for pid in list(self.running):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                self._gone(pid, status)
                if not self._forwarded:
                    log.error("worker %d exited with status %d; stopping", pid,
                              os.waitstatus_to_exitcode(status))
                    self.crashed = True
                    self.forward_and_stop(signal.SIGTERM)

    def wait(self, timeout: float) -> bool:
        """Wait for every worker to exit (SIGKILL after ``timeout``); True if all exited 0."""
        clean = not self.crashed
        deadline = time.monotonic() + timeout
        for pid in list(self.running):
            while True:
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    self.running.discard(pid)
                    break
                if done:
                    clean = self._gone(pid, status) and clean
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                time.sleep(0.05)
        return clean

    def _gone(self, pid: int, status: int) -> bool:
        from prometheus_client import multiprocess

        self.running.discard(pid)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            multiprocess.mark_process_dead(pid)
        return os.waitstatus_to_exitcode(status) == 0


def run(config: ServeConfig) -> int:
    """One process, or a pool of ``config.workers`` sharing the ports (``ferry.serving.pool``)."""
    from prometheus_client import disable_created_metrics

    disable_created_metrics()
    if config.workers > 1:
        from ferry.serving.pool import run_pool

        return run_pool(config)
    return asyncio.run(serve(config))
