"""The Open Inference Protocol v2 gRPC messages (package ``inference``), built at import time.

Why no generated ``_pb2`` module: generated code pins the protobuf runtime to the major version of
the compiler that wrote it, while the server shares its protobuf with MLflow, which moves on its own.
A descriptor built here from the protocol's field table works with any protobuf 4+ runtime and
needs no compiler in the image. The table lists the fields of the KServe/Triton protocol that
``ferry serve`` implements (health, metadata, infer); names and field numbers are the wire contract,
so standard clients (``tritonclient.grpc``, KServe's ``InferenceGRPCClient``) talk to it unchanged.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "inference"
SERVICE = "GRPCInferenceService"

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {"bool": _F.TYPE_BOOL, "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64,
          "uint32": _F.TYPE_UINT32, "uint64": _F.TYPE_UINT64, "float": _F.TYPE_FLOAT,
          "double": _F.TYPE_DOUBLE, "string": _F.TYPE_STRING, "bytes": _F.TYPE_BYTES}

# message -> [(field, number, type, label)]: label "" single, "*" repeated, "map" a string-keyed
# map of that message type, "oneof" a member of the message's one oneof.
_PARAMS = ("parameters", "InferParameter", "map")
MESSAGES: dict[str, list[tuple]] = {
    "ServerLiveRequest": [],
    "ServerLiveResponse": [("live", 1, "bool", "")],
    "ServerReadyRequest": [],
    "ServerReadyResponse": [("ready", 1, "bool", "")],
    "ModelReadyRequest": [("name", 1, "string", ""), ("version", 2, "string", "")],
    "ModelReadyResponse": [("ready", 1, "bool", "")],
    "ServerMetadataRequest": [],
    "ServerMetadataResponse": [("name", 1, "string", ""), ("version", 2, "string", ""),
                               ("extensions", 3, "string", "*")],
    "ModelMetadataRequest": [("name", 1, "string", ""), ("version", 2, "string", "")],
    "TensorMetadata": [("name", 1, "string", ""), ("datatype", 2, "string", ""),
                       ("shape", 3, "int64", "*")],
    "ModelMetadataResponse": [("name", 1, "string", ""), ("versions", 2, "string", "*"),
                              ("platform", 3, "string", ""), ("inputs", 4, "TensorMetadata", "*"),
                              ("outputs", 5, "TensorMetadata", "*")],
    "InferParameter": [("bool_param", 1, "bool", "oneof"), ("int64_param", 2, "int64", "oneof"),
                       ("string_param", 3, "string", "oneof"), ("double_param", 4, "double", "oneof"),
                       ("uint64_param", 5, "uint64", "oneof")],
    "InferTensorContents": [("bool_contents", 1, "bool", "*"), ("int_contents", 2, "int32", "*"),
                            ("int64_contents", 3, "int64", "*"), ("uint_contents", 4, "uint32", "*"),
                            ("uint64_contents", 5, "uint64", "*"), ("fp32_contents", 6, "float", "*"),
                            ("fp64_contents", 7, "double", "*"), ("bytes_contents", 8, "bytes", "*")],
    "InferInputTensor": [("name", 1, "string", ""), ("datatype", 2, "string", ""),
                         ("shape", 3, "int64", "*"), (_PARAMS[0], 4, *_PARAMS[1:]),
                         ("contents", 5, "InferTensorContents", "")],
    "InferRequestedOutputTensor": [("name", 1, "string", ""), (_PARAMS[0], 2, *_PARAMS[1:])],
    "ModelInferRequest": [("model_name", 1, "string", ""), ("model_version", 2, "string", ""),
                          ("id", 3, "string", ""), (_PARAMS[0], 4, *_PARAMS[1:]),
                          ("inputs", 5, "InferInputTensor", "*"),
                          ("outputs", 6, "InferRequestedOutputTensor", "*"),
                          ("raw_input_contents", 7, "bytes", "*")],
    "InferOutputTensor": [("name", 1, "string", ""), ("datatype", 2, "string", ""),
                          ("shape", 3, "int64", "*"), (_PARAMS[0], 4, *_PARAMS[1:]),
                          ("contents", 5, "InferTensorContents", "")],
    "ModelInferResponse": [("model_name", 1, "string", ""), ("model_version", 2, "string", ""),
                           ("id", 3, "string", ""), (_PARAMS[0], 4, *_PARAMS[1:]),
                           ("outputs", 5, "InferOutputTensor", "*"),
                           ("raw_output_contents", 6, "bytes", "*")],
}

# rpc -> (request, response)
METHODS = {name: (f"{name}Request", f"{name}Response") for name in
           ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")}


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="ferry/oip_v2.proto", package=PACKAGE,
                                              syntax="proto3")
    for name, fields in MESSAGES.items():
        message = file.message_type.add(name=name)
        if any(label == "oneof" for *_, label in fields):
            message.oneof_decl.add(name="parameter_choice")
        for field, number, kind, label in fields:
            entry = message.field.add(name=field, number=number, json_name=_camel(field))
            entry.label = _F.LABEL_REPEATED if label in ("*", "map") else _F.LABEL_OPTIONAL
            if label == "oneof":
                entry.oneof_index = 0
            if label == "map":
                map_entry = message.nested_type.add(name=f"{_camel(field, upper=True)}Entry")
                map_entry.options.map_entry = True
                map_entry.field.add(name="key", number=1, type=_F.TYPE_STRING,
                                    label=_F.LABEL_OPTIONAL, json_name="key")
                map_entry.field.add(name="value", number=2, type=_F.TYPE_MESSAGE,
                                    type_name=f".{PACKAGE}.{kind}", label=_F.LABEL_OPTIONAL,
                                    json_name="value")
                entry.type, entry.type_name = _F.TYPE_MESSAGE, f".{PACKAGE}.{name}.{map_entry.name}"
            elif kind in _TYPES:
                entry.type = _TYPES[kind]
            else:
                entry.type, entry.type_name = _F.TYPE_MESSAGE, f".{PACKAGE}.{kind}"
    service = file.service.add(name=SERVICE)
    for method, (request, response) in METHODS.items():
        service.method.add(name=method, input_type=f".{PACKAGE}.{request}",
                           output_type=f".{PACKAGE}.{response}")
    return file


def _camel(name: str, upper: bool = False) -> str:
    head, *rest = name.split("_")
    text = head + "".join(part.title() for part in rest)
    return text[:1].upper() + text[1:] if upper else text


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())
messages = {name: message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in MESSAGES}
