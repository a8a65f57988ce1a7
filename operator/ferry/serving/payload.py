"""Request bodies → ``Frame``: the model input of one request, in the cheapest exact form.

Pure functions; every problem raises ``PayloadError`` (answered with 400 and its message).
Decisions, where MLflow's scoring server is loose or silent:

- A body of plain JSON floats (the common case) becomes one 2-D float64 block: no per-request pandas
  work; the block turns into a DataFrame only once per batch. Anything else (ints, strings, bools,
  nulls, mixed columns) goes through the pandas constructor, exactly as MLflow builds it, so the
  column dtypes the model sees are the same as under ``mlflow models serve``.
- ``dataframe_split`` without ``columns`` and row lists in ``instances``/``inputs`` take the
  column names of the model's input signature (by position) when the widths match.
- v2 ``infer``: each named input is one column (MLServer's pandas convention); a single input of
  shape ``[n, k]`` is a block with the signature's k column names, or a tensor for tensor models.
"""

from __future__ import annotations

import csv
import io
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

JSON_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")

V2_DATATYPES = {
    "BOOL": np.bool_, "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32,
    "UINT64": np.uint64, "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64, "BYTES": object,
}


class PayloadError(ValueError):
    """The request body cannot be turned into model input; the message says why."""


@dataclass(frozen=True)
class ModelInputs:
    """What the parser needs to know about the model: its signature's column names, if any."""

    columns: tuple[str, ...] | None = None


@dataclass
class Frame:
    """One request's input. ``kind`` is ``block`` (2-D numeric ndarray + ``columns``),
    ``frame`` (a pandas DataFrame) or ``tensor`` (an ndarray for models without column names)."""

    kind: str
    data: Any
    columns: tuple[str, ...] | None
    rows: int
    params: dict | None = None

    def batch_key(self) -> tuple:
        """Frames with equal keys can be concatenated into one predict call without changing any
        dtype the model sees."""
        if self.kind == "frame":
            dtypes = tuple(str(dtype) for dtype in self.data.dtypes)
        else:
            dtypes = (str(self.data.dtype), self.data.shape[1:])
        params = orjson.dumps(self.params, option=orjson.OPT_SORT_KEYS) if self.params else b""
        return self.kind, self.columns, dtypes, params


def parse_invocations(body: bytes, content_type: str | None, model: ModelInputs) -> Frame:
    """MLflow's ``POST /invocations``: JSON (dataframe_split, dataframe_records, instances,
    inputs, optional params) or CSV with a header row."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "text/csv":
        return _parse_csv(body)
    if media not in ("application/json", ""):
        raise PayloadError(f"unsupported content type {media!r}: use application/json or text/csv")
    document = _load_json(body)
    if not isinstance(document, dict):
        raise PayloadError(f"the JSON body must be an object with one of the keys {', '.join(JSON_KEYS)}")
    present = [key for key in JSON_KEYS if key in document]
    unknown = sorted(set(document) - set(JSON_KEYS) - {"params"})
    if len(present) != 1 or unknown:
        found = ", ".join(sorted(document)) or "none"
        raise PayloadError(f"the JSON body needs exactly one of the keys {', '.join(JSON_KEYS)} "
                           f"(and optionally params); found: {found}")
    params = document.get("params")
    if params is not None and not isinstance(params, dict):
        raise PayloadError("params must be a JSON object")
    key = present[0]
    value = document[key]
    if key == "dataframe_split":
        frame = _from_split(value, model)
    elif key == "dataframe_records":
        frame = _from_records(value, key)
    else:
        frame = _from_instances(value, key, model)
    frame.params = params or None
    return frame


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of a v2 request's ``outputs``: its name and whether it wants binary data
    (``parameters.binary_data``; None: the request's ``binary_data_output`` decides)."""

    name: str
    binary: bool | None = None


@dataclass
class V2Request:
    """A parsed v2 infer request: the model input, the request id and the outputs asked for
    (None: every output), whether outputs default to the binary tensor extension, and
    ``parameters.ids`` as sent (per-row prediction ids, checked by ``ids.v2_ids``; never a model
    param)."""

    frame: Frame
    id: str | None = None
    outputs: tuple[RequestedOutput, ...] | None = None
    binary_output: bool = False
    ids: Any = None


def parse_v2_infer(body: bytes, model: ModelInputs, header_length: int | None = None) -> V2Request:
    """An Open Inference Protocol v2 REST infer request → ``V2Request``.

    With ``header_length`` (the ``Inference-Header-Content-Length`` header) the body is that many
    bytes of JSON followed by the binary tensor data: an input whose ``parameters.binary_data_size``
    is set takes its bytes from there, in the order the inputs are listed (the binary extension).
    """
    raw = b""
    if header_length is not None:
        if not 0 < header_length <= len(body):
            raise PayloadError(f"Inference-Header-Content-Length is {header_length} but the body has "
                               f"{len(body)} bytes")
        body, raw = body[:header_length], memoryview(body)[header_length:]
    document = _load_json(body)
    if not isinstance(document, dict):
        raise PayloadError("the JSON body must be an object with an 'inputs' list")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise PayloadError("'inputs' must be a non-empty list of tensors")
    request_id = document.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise PayloadError("'id' must be a string")
    parameters = _parameters(document.get("parameters"), "parameters")
    tensors, offset = [], 0
    for index, item in enumerate(inputs):
        name, array, used = _v2_input(index, item, raw[offset:])
        tensors.append((name, array))
        offset += used
    if offset != len(raw):
        raise PayloadError(f"the body has {len(raw) - offset} bytes of binary data no input claims")
    binary_output = parameters.pop("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise PayloadError("parameters.binary_data_output must be true or false")
    row_ids = parameters.pop("ids", None)
    params = {k: v for k, v in parameters.items() if k != "content_type"} or None
    return V2Request(v2_frame(tensors, params, model), request_id,
                     _requested_outputs(document.get("outputs")), binary_output, row_ids)


def _parameters(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PayloadError(f"'{where}' must be an object")
    return dict(value)


def _requested_outputs(value) -> tuple[RequestedOutput, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise PayloadError("'outputs' must be a list of objects with a name")
    found = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise PayloadError(f"outputs[{index}] must be an object with a name")
        binary = _parameters(item.get("parameters"), f"outputs[{index}].parameters").get("binary_data")
        if binary is not None and not isinstance(binary, bool):
            raise PayloadError(f"outputs[{index}].parameters.binary_data must be true or false")
        found.append(RequestedOutput(item["name"], binary))
    return tuple(found) or None


def v2_frame(tensors: list[tuple[str, np.ndarray]], params: dict | None, model: ModelInputs) -> Frame:
    """Named input tensors (REST or gRPC) → the frame the model gets."""
    names = [name for name, _ in tensors]
    if len(set(names)) != len(names):
        raise PayloadError("input names must be unique")
    if len(tensors) == 1:
        name, array = tensors[0]
        if array.ndim == 2 and model.columns and array.shape[1] == len(model.columns):
            return _block_or_frame(array, model.columns, params)
        if array.ndim == 1 and model.columns and name in model.columns:
            return _columns_frame({name: array}, params)
        if array.ndim == 0:
            raise PayloadError(f"input {name!r} must have at least one dimension (the rows)")
        return Frame("tensor", array, None, len(array), params)
    lengths = set()
    for name, array in tensors:
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise PayloadError(f"input {name!r} has shape {list(array.shape)}: with several inputs "
                               "each one is a column of shape [rows] or [rows, 1]")
        lengths.add(len(array))
    if len(lengths) != 1:
        raise PayloadError(f"all inputs must have the same number of rows, got {sorted(lengths)}")
    return _columns_frame({name: array.reshape(-1) for name, array in tensors}, params)


def _v2_input(index: int, item, raw: memoryview | bytes) -> tuple[str, np.ndarray, int]:
    """(name, array, binary bytes used) of one REST input tensor."""
    if not isinstance(item, dict):
        raise PayloadError(f"inputs[{index}] must be an object with name, shape, datatype, data")
    size = _parameters(item.get("parameters"), f"inputs[{index}].parameters").get("binary_data_size")
    needed = ("name", "shape", "datatype") if size is not None else ("name", "shape", "datatype", "data")
    missing = [key for key in needed if key not in item]
    if missing:
        raise PayloadError(f"inputs[{index}] lacks {', '.join(missing)}")
    name, shape, datatype = item["name"], item["shape"], item["datatype"]
    if not isinstance(name, str) or not name:
        raise PayloadError(f"inputs[{index}].name must be a non-empty string")
    if size is None:
        return name, tensor_from_values(name, shape, datatype, item["data"]), 0
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= len(raw):
        raise PayloadError(f"input {name!r}: binary_data_size {size!r} does not fit the "
                           f"{len(raw)} bytes of binary data left")
    return name, tensor_from_bytes(name, shape, datatype, raw[:size]), size


def _checked_shape(name: str, shape, datatype) -> tuple[list[int], Any]:
    if (not isinstance(shape, list | tuple) or not shape
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise PayloadError(f"input {name!r}: shape must be a list of non-negative integers")
    dtype = V2_DATATYPES.get(datatype)
    if dtype is None:
        raise PayloadError(f"input {name!r}: unknown datatype {datatype!r}; "
                           f"one of {', '.join(V2_DATATYPES)}")
    if shape[0] == 0:
        raise PayloadError(f"input {name!r} has no rows")
    return list(shape), dtype


def tensor_from_values(name: str, shape, datatype: str, data) -> np.ndarray:
    """A tensor from its JSON ``data`` (flat or nested, row-major)."""
    shape, dtype = _checked_shape(name, shape, datatype)
    if not isinstance(data, list):
        raise PayloadError(f"input {name!r}: data must be a list")
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as error:
        raise PayloadError(f"input {name!r}: data does not fit datatype {datatype}: {error}") from None
    return _reshaped(name, array, shape)


def tensor_from_bytes(name: str, shape, datatype: str, raw) -> np.ndarray:
    """A tensor from the binary tensor extension's bytes: little-endian values, row-major; BYTES
    elements each with a 4-byte little-endian length prefix. Numeric tensors are read in place."""
    shape, dtype = _checked_shape(name, shape, datatype)
    if dtype is object:
        array = np.asarray(_length_prefixed(name, bytes(raw)), dtype=object)
    else:
        itemsize = np.dtype(dtype).itemsize
        if len(raw) % itemsize:
            raise PayloadError(f"input {name!r}: {len(raw)} bytes are not a whole number of "
                               f"{datatype} values")
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    return _reshaped(name, array, shape)


def _length_prefixed(name: str, raw: bytes) -> list[bytes]:
    items, at = [], 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise PayloadError(f"input {name!r}: a BYTES element is cut off")
        size = int.from_bytes(raw[at:at + 4], "little")
        if at + 4 + size > len(raw):
            raise PayloadError(f"input {name!r}: a BYTES element is cut off")
        items.append(raw[at + 4:at + 4 + size])
        at += 4 + size
    return items


def _reshaped(name: str, array: np.ndarray, shape: list[int]) -> np.ndarray:
    if array.size != int(np.prod(shape)):
        raise PayloadError(f"input {name!r}: shape {shape} needs {int(np.prod(shape))} values, "
                           f"data has {array.size}")
    return array.reshape(shape)


def _load_json(body: bytes):
    if not body or not body.strip():
        raise PayloadError("the request body is empty")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise PayloadError(f"the body is not valid JSON: {error}") from None


def _parse_csv(body: bytes) -> Frame:
    import pandas as pd

    if not body.strip():
        raise PayloadError("the CSV body is empty")
    try:
        frame = pd.read_csv(io.BytesIO(body))
    except (ValueError, UnicodeDecodeError, csv.Error) as error:
        raise PayloadError(f"the body is not valid CSV: {error}") from None
    if frame.empty:
        raise PayloadError("the CSV body has a header but no rows")
    return Frame("frame", frame, tuple(str(c) for c in frame.columns), len(frame))


def _from_split(value, model: ModelInputs) -> Frame:
    if not isinstance(value, dict):
        raise PayloadError("dataframe_split must be an object with 'columns' and 'data'")
    data = value.get("data")
    columns = value.get("columns")
    if not isinstance(data, list):
        raise PayloadError("dataframe_split.data must be a list of rows")
    if columns is not None and (not isinstance(columns, list)
                                or not all(isinstance(c, str | int) for c in columns)):
        raise PayloadError("dataframe_split.columns must be a list of column names")
    return _from_rows(data, tuple(str(c) for c in columns) if columns is not None else None,
                      "dataframe_split.data", model)


def _from_rows(rows: list, columns: tuple[str, ...] | None, where: str, model: ModelInputs) -> Frame:
    if not rows:
        raise PayloadError(f"{where} has no rows")
    for number, row in enumerate(rows):
        if not isinstance(row, list):
            raise PayloadError(f"{where}[{number}] must be a list of values")
    width = len(rows[0])
    if columns is None:
        if model.columns is None or len(model.columns) != width:
            expected = f"the model's {len(model.columns)} columns" if model.columns else "names"
            raise PayloadError(f"{where}: rows have {width} values but no column names were given "
                               f"and they do not match {expected}")
        columns = model.columns
    for number, row in enumerate(rows):
        if len(row) != len(columns):
            raise PayloadError(f"{where}[{number}] has {len(row)} values, expected {len(columns)} "
                               f"(one per column)")
    if len(set(columns)) != len(columns):
        raise PayloadError(f"{where}: column names must be unique")
    types = set(map(type, itertools.chain.from_iterable(rows)))
    if types == {float} or types == {int}:
        try:
            block = np.asarray(rows, dtype=np.float64 if types == {float} else np.int64)
            return Frame("block", block, columns, len(rows))
        except OverflowError:
            pass  # ints beyond int64: let pandas pick object, as MLflow does
    return _pandas_frame(rows, columns)


def _from_records(records, where: str) -> Frame:
    if not isinstance(records, list) or not records:
        raise PayloadError(f"{where} must be a non-empty list of objects (one per row)")
    for number, record in enumerate(records):
        if not isinstance(record, dict):
            raise PayloadError(f"{where}[{number}] must be an object of column: value")
    columns = tuple(records[0])
    if all(tuple(record) == columns for record in records):
        return _from_rows([list(record.values()) for record in records], columns, where,
                          ModelInputs(columns))
    import pandas as pd

    frame = pd.DataFrame(records)
    return Frame("frame", frame, tuple(str(c) for c in frame.columns), len(frame))


def _from_instances(value, key: str, model: ModelInputs) -> Frame:
    if isinstance(value, dict):
        if not value:
            raise PayloadError(f"{key} is an empty object")
        arrays = {}
        for name, column in value.items():
            if not isinstance(column, list):
                raise PayloadError(f"{key}.{name} must be a list of values (one per row)")
            arrays[name] = column
        lengths = {len(column) for column in arrays.values()}
        if len(lengths) != 1:
            raise PayloadError(f"all columns of {key} must have the same length, got {sorted(lengths)}")
        if lengths == {0}:
            raise PayloadError(f"{key} has no rows")
        return _columns_frame(arrays, None)
    if not isinstance(value, list) or not value:
        raise PayloadError(f"{key} must be a non-empty list of rows or an object of columns")
    if isinstance(value[0], dict):
        return _from_records(value, key)
    if isinstance(value[0], list) and model.columns and len(value[0]) == len(model.columns):
        return _from_rows(value, model.columns, key, model)
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise PayloadError(f"{key} is not a rectangular tensor: {error}") from None
    if array.dtype == object or (array.dtype.kind in "US"
                                 and not all(isinstance(v, str) for v in _flat(value))):
        raise PayloadError(f"{key} mixes value types or nests unevenly")
    return Frame("tensor", array, None, len(array))


def _flat(value):
    for item in value:
        if isinstance(item, list):
            yield from _flat(item)
        else:
            yield item


def _block_or_frame(array: np.ndarray, columns: tuple[str, ...], params) -> Frame:
    if array.dtype.kind in "fiu":
        return Frame("block", array, columns, len(array), params)
    import pandas as pd

    return Frame("frame", pd.DataFrame(array, columns=list(columns)), columns, len(array), params)


def _columns_frame(arrays: dict, params) -> Frame:
    import pandas as pd

    frame = pd.DataFrame(arrays)
    return Frame("frame", frame, tuple(str(c) for c in frame.columns), len(frame), params)


def _pandas_frame(rows: list, columns: tuple[str, ...]) -> Frame:
    import pandas as pd

    frame = pd.DataFrame(rows, columns=list(columns))
    return Frame("frame", frame, columns, len(frame))


def model_input(frame: Frame):
    """What ``pyfunc.predict`` receives for a (possibly merged) frame."""
    if frame.kind == "block":
        import pandas as pd

        return pd.DataFrame(frame.data, columns=list(frame.columns), copy=False)
    return frame.data


def merge(frames: list[Frame]) -> Frame:
    """Concatenate frames of one ``batch_key`` row-wise (in order)."""
    if len(frames) == 1:
        return frames[0]
    first = frames[0]
    if first.kind == "frame":
        import pandas as pd

        data = pd.concat([f.data for f in frames], ignore_index=True)
    else:
        data = np.concatenate([f.data for f in frames])
    return Frame(first.kind, data, first.columns, sum(f.rows for f in frames), first.params)
