"""Open Inference Protocol v2 over gRPC (``inference.GRPCInferenceService``), next to REST.

The same ``Server`` answers both: one model, one batcher, one prediction log, the same request
metrics (route ``/inference.GRPCInferenceService/<Method>``, the status as the HTTP code REST would
answer, so error rates and latency stay comparable). It runs on the REST server's event loop
(``grpc.aio``), on port FERRY_GRPC_PORT (8081 by default, as KServe and MLServer do).

Tensors come as ``raw_input_contents`` (what ``tritonclient.grpc`` sends) or typed ``contents``;
outputs always go back as ``raw_output_contents``, which every standard client decodes.
"""

from __future__ import annotations

import time

import grpc
import numpy as np

from ferry.serving.oip_proto import PACKAGE, SERVICE, messages
from ferry.serving.outputs import (UnknownOutput, select_outputs, tensor_bytes, v2_arrays,
                                   v2_datatype)
from ferry.serving.payload import (PayloadError, RequestedOutput, tensor_from_bytes,
                                   tensor_from_values, v2_frame)

CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 404: grpc.StatusCode.NOT_FOUND,
         503: grpc.StatusCode.UNAVAILABLE, 500: grpc.StatusCode.INTERNAL}
# The typed ``contents`` field that holds each datatype.
CONTENTS = {"BOOL": "bool_contents", "INT8": "int_contents", "INT16": "int_contents",
            "INT32": "int_contents", "INT64": "int64_contents", "UINT8": "uint_contents",
            "UINT16": "uint_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
            "FP16": "fp32_contents", "FP32": "fp32_contents", "FP64": "fp64_contents",
            "BYTES": "bytes_contents"}
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class Failure(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parameters(entries) -> dict:
    """A protobuf ``map<string, InferParameter>`` as plain values."""
    found = {}
    for key, value in entries.items():
        choice = value.WhichOneof("parameter_choice")
        found[key] = getattr(value, choice) if choice else None
    return found


def request_tensors(request) -> list[tuple[str, np.ndarray]]:
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise PayloadError(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs")
    tensors = []
    for index, tensor in enumerate(request.inputs):
        shape = list(tensor.shape)
        if raw:
            array = tensor_from_bytes(tensor.name, shape, tensor.datatype, raw[index])
        else:
            field = CONTENTS.get(tensor.datatype)
            values = list(getattr(tensor.contents, field)) if field else []
            array = tensor_from_values(tensor.name, shape, tensor.datatype, values)
        tensors.append((tensor.name, array))
    return tensors


class GrpcService:
    """The gRPC methods, bound to a ``Server``."""

    def __init__(self, server) -> None:
        self.server = server

    def handler(self) -> grpc.GenericRpcHandler:
        methods = {"ServerLive": self.server_live, "ServerReady": self.server_ready,
                   "ModelReady": self.model_ready, "ServerMetadata": self.server_metadata,
                   "ModelMetadata": self.model_metadata, "ModelInfer": self.model_infer}
        return grpc.method_handlers_generic_handler(f"{PACKAGE}.{SERVICE}", {
            name: grpc.unary_unary_rpc_method_handler(
                self._observed(name, method),
                request_deserializer=messages[f"{name}Request"].FromString,
                response_serializer=messages[f"{name}Response"].SerializeToString)
            for name, method in methods.items()})

    def _observed(self, name: str, method):
        route = f"/{PACKAGE}.{SERVICE}/{name}"
        metrics = self.server.metrics

        async def call(request, context):
            started = time.perf_counter()
            metrics.inflight.inc()
            status = 200
            try:
                return await method(request)
            except Failure as failure:
                status = failure.status
                await context.abort(CODES[status], str(failure))
            finally:
                metrics.inflight.dec()
                metrics.request(route, status, time.perf_counter() - started)
        return call

    async def server_live(self, request):
        return messages["ServerLiveResponse"](live=True)

    async def server_ready(self, request):
        return messages["ServerReadyResponse"](ready=self.server.ready)

    def _check_model(self, name: str, version: str) -> None:
        unknown = self.server.unknown_model(name, version)
        if unknown:
            raise Failure(404, unknown)

    async def model_ready(self, request):
        self._check_model(request.name, request.version)
        return messages["ModelReadyResponse"](ready=self.server.ready)

    async def server_metadata(self, request):
        return messages["ServerMetadataResponse"](**self.server.server_metadata())

    async def model_metadata(self, request):
        self._check_model(request.name, request.version)
        if not self.server.ready:
            raise Failure(503, "the model is not loaded yet")
        found = self.server.model_metadata()
        tensor = messages["TensorMetadata"]
        return messages["ModelMetadataResponse"](
            name=found["name"], versions=found["versions"], platform=found["platform"],
            inputs=[tensor(**spec) for spec in found["inputs"]],
            outputs=[tensor(**spec) for spec in found["outputs"]])

    async def model_infer(self, request):
        server = self.server
        self._check_model(request.model_name, request.model_version)
        if server.model is None:
            raise Failure(503, "the model is not loaded yet")
        try:
            params = {k: v for k, v in parameters(request.parameters).items()
                      if k not in ("content_type", "binary_data_output")} or None
            frame = v2_frame(request_tensors(request), params, server.model.inputs)
        except PayloadError as error:
            raise Failure(400, str(error)) from None
        output, failure = await server.predict(frame)
        if failure:
            raise Failure(*failure)
        requested = tuple(RequestedOutput(item.name) for item in request.outputs) or None
        try:
            arrays = select_outputs(v2_arrays(output), requested)
        except UnknownOutput as error:
            raise Failure(400, str(error)) from None
        head = server.v2_head(request.id or None)
        response = messages["ModelInferResponse"](model_name=head["model_name"],
                                                  model_version=head["model_version"],
                                                  id=request.id)
        for name, array in arrays:
            response.outputs.add(name=name, datatype=v2_datatype(array), shape=list(array.shape))
            response.raw_output_contents.append(tensor_bytes(array))
        return response


async def start(server, host: str, port: int) -> grpc.aio.Server:
    """A started gRPC server for ``server`` on ``host:port`` (shared with sibling workers)."""
    listener = grpc.aio.server(options=[("grpc.so_reuseport", 1),
                                        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                                        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)])
    listener.add_generic_rpc_handlers([GrpcService(server).handler()])
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if listener.add_insecure_port(address) == 0:
        raise OSError(f"cannot listen for gRPC on {address}")
    await listener.start()
    return listener
