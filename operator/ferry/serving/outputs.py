"""Model outputs: split a batch's predictions back per request, encode them for each protocol,
and name them for the prediction log and the prediction-value histogram. Pure functions.

``pyfunc.predict`` returns an ndarray, a pandas Series or DataFrame, a list or a dict of arrays;
all of them are row-aligned with the input, which is what makes exact batching possible.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

_DUMP_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS

V2_NAMES = {"b1": "BOOL", "u1": "UINT8", "u2": "UINT16", "u4": "UINT32", "u8": "UINT64",
            "i1": "INT8", "i2": "INT16", "i4": "INT32", "i8": "INT64",
            "f2": "FP16", "f4": "FP32", "f8": "FP64"}


class UnsplittableOutput(ValueError):
    """The output is not row-aligned with the batch, so requests must be predicted one by one."""


def output_rows(output: Any) -> int:
    if isinstance(output, dict):
        lengths = {len(value) for value in output.values()}
        if len(lengths) != 1:
            raise UnsplittableOutput("dict outputs of different lengths")
        return lengths.pop()
    try:
        return len(output)
    except TypeError:
        raise UnsplittableOutput(f"output of type {type(output).__name__} has no rows") from None


def split(output: Any, sizes: list[int]) -> list[Any]:
    """Cut a batch output into consecutive slices of ``sizes`` rows."""
    if len(sizes) == 1:
        return [output]
    if output_rows(output) != sum(sizes):
        raise UnsplittableOutput(f"the model returned {output_rows(output)} rows for {sum(sizes)}")
    bounds = np.cumsum([0, *sizes])
    return [_rows(output, int(start), int(stop)) for start, stop in zip(bounds, bounds[1:], strict=False)]


def _rows(output: Any, start: int, stop: int):
    if isinstance(output, dict):
        return {key: _rows(value, start, stop) for key, value in output.items()}
    if hasattr(output, "iloc"):
        return output.iloc[start:stop]
    return output[start:stop]


def invocations_json(output: Any, ids: list[str]) -> bytes:
    """``{"predictions": ...}`` as ``mlflow models serve`` writes it, and the rows' prediction
    ``ids`` next to it (clients that only read ``predictions`` see no difference)."""
    return orjson.dumps({"predictions": _jsonable(output), "ids": ids}, option=_DUMP_OPTIONS)


def _jsonable(output: Any):
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        return output.to_dict(orient="records")
    if isinstance(output, pd.Series):
        return _array(output.to_numpy())
    if isinstance(output, np.ndarray):
        return _array(output)
    if isinstance(output, dict):
        return {key: _jsonable(value) for key, value in output.items()}
    return output


def _array(array: np.ndarray):
    """orjson writes numeric C-contiguous arrays natively; everything else as Python lists."""
    if array.dtype.kind in "biuf":
        return np.ascontiguousarray(array)
    return array.tolist()


def v2_arrays(output: Any) -> list[tuple[str, np.ndarray]]:
    """The output as named Open Inference Protocol tensors: one per output column (or the whole
    array, named ``predict``)."""
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        return [(str(name), output[name].to_numpy()) for name in output.columns]
    if isinstance(output, pd.Series):
        return [(str(output.name) if output.name is not None else "predict", output.to_numpy())]
    if isinstance(output, dict):
        return [(str(key), np.asarray(value)) for key, value in output.items()]
    return [("predict", np.asarray(output))]


def v2_datatype(array: np.ndarray) -> str:
    return V2_NAMES.get(f"{array.dtype.kind}{array.dtype.itemsize}", "BYTES")


def v2_outputs(output: Any) -> list[dict]:
    """The JSON tensors of a v2 REST answer."""
    return [v2_json_tensor(name, array) for name, array in v2_arrays(output)]


def v2_json_tensor(name: str, array: np.ndarray) -> dict:
    datatype = v2_datatype(array)
    data = _array(array.reshape(-1)) if datatype != "BYTES" else [_text(v) for v in array.reshape(-1)]
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def tensor_bytes(array: np.ndarray) -> bytes:
    """The binary tensor extension's encoding: little-endian row-major values; BYTES elements
    with a 4-byte little-endian length prefix each."""
    datatype = v2_datatype(array)
    if datatype != "BYTES":
        return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    parts = []
    for value in array.reshape(-1):
        encoded = value if isinstance(value, bytes) else str(_text(value)).encode()
        parts += [len(encoded).to_bytes(4, "little"), encoded]
    return b"".join(parts)


def select_outputs(arrays: list[tuple[str, np.ndarray]], requested) -> list[tuple[str, np.ndarray]]:
    """The tensors a request asked for, in its order (all of them when it names none)."""
    if requested is None:
        return arrays
    by_name = dict(arrays)
    unknown = [item.name for item in requested if item.name not in by_name]
    if unknown:
        raise UnknownOutput(f"requested output {unknown[0]!r} is not an output of this model; "
                            f"its outputs: {', '.join(by_name)}")
    return [(item.name, by_name[item.name]) for item in requested]


class UnknownOutput(ValueError):
    """A request asked for an output the model does not have (HTTP 400)."""


def v2_rest_answer(head: dict, arrays: list[tuple[str, np.ndarray]], requested,
                   binary_default: bool) -> tuple[bytes, int | None]:
    """The body of a v2 REST answer and, when any output uses the binary tensor extension, the
    length of its JSON part (the ``Inference-Header-Content-Length`` header)."""
    wanted = {item.name: item.binary for item in requested or ()}
    tensors, raw = [], []
    for name, array in select_outputs(arrays, requested):
        binary = wanted.get(name)
        if binary if binary is not None else binary_default:
            data = tensor_bytes(array)
            raw.append(data)
            tensors.append({"name": name, "datatype": v2_datatype(array), "shape": list(array.shape),
                            "parameters": {"binary_data_size": len(data)}})
        else:
            tensors.append(v2_json_tensor(name, array))
    header = dumps({**head, "outputs": tensors})
    if not raw:
        return header, None
    return b"".join([header, *raw]), len(header)


def _text(value) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def dumps(document: dict) -> bytes:
    return orjson.dumps(document, option=_DUMP_OPTIONS)


def output_columns(output: Any) -> list[tuple[str, np.ndarray]]:
    """The output as named 1-D columns for the prediction log: ``prediction`` for a single output,
    ``prediction_<name>`` per column otherwise (positions name the columns of a 2-D array)."""
    import pandas as pd

    if isinstance(output, pd.DataFrame):
        named = [(str(name), output[name].to_numpy()) for name in output.columns]
    elif isinstance(output, dict):
        named = [(str(key), np.asarray(value)) for key, value in output.items()]
    else:
        array = output.to_numpy() if isinstance(output, pd.Series) else np.asarray(output)
        if array.ndim == 2:
            named = [(str(index), array[:, index]) for index in range(array.shape[1])]
        else:
            named = [("", array.reshape(len(array), -1)[:, 0] if array.ndim > 2 else array)]
    if len(named) == 1:
        return [("prediction", named[0][1])]
    return [(f"prediction_{name}", values) for name, values in named]


def first_numeric(output: Any) -> np.ndarray | None:
    """The first numeric output per row (float64), for the prediction-value histogram."""
    for _, values in output_columns(output):
        if values.ndim == 1 and values.dtype.kind in "biuf":
            return values.astype(np.float64, copy=False)
    return None
