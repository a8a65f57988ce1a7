"""Prediction ids: every predicted row gets one, so a label that arrives later joins to it.

Where a row's id comes from, the first that applies:

- a column named FERRY_ID_COLUMN (default ``id``) of the request: any ``/invocations`` form
  (``dataframe_split``, ``dataframe_records``, ``instances``/``inputs`` as columns, CSV) or an OIP
  v2 input tensor of that name;
- OIP v2 only: ``parameters.ids``, a list of one string or integer per row; a one-row request
  without per-row ids uses its request ``id``;
- otherwise generated: 32 random hex digits (128 bits, as random as a uuid4). Random rather than
  time-ordered, because the prediction log already carries each row's time.

The id column is removed before the model sees the input, unless the model's signature names it
as an input (then the model needs it, and it is both a feature and the id). Ids are text: integers
are written in decimal, whole floats as integers (a JSON block of numbers may turn 7 into 7.0).
Pure functions; a bad id raises ``PayloadError`` (400).
"""

from __future__ import annotations

import math
import os

import numpy as np

from ferry.serving.payload import Frame, ModelInputs, PayloadError

HEADER = "X-Ferry-Prediction-Id"


def generate(rows: int) -> list[str]:
    """``rows`` random 128-bit ids as hex; one ``urandom`` call, cheap even for big batches."""
    digits = os.urandom(16 * rows).hex()
    return [digits[start:start + 32] for start in range(0, 32 * rows, 32)]


def take(frame: Frame, column: str, model: ModelInputs) -> tuple[Frame, list[str] | None]:
    """The frame the model gets and the ids found in its ``column`` (None: no such column)."""
    if not column or frame.kind == "tensor" or not frame.columns or column not in frame.columns:
        return frame, None
    if frame.kind == "block":
        index = frame.columns.index(column)
        values = frame.data[:, index].tolist()
    else:
        label = next(name for name in frame.data.columns if str(name) == column)
        values = frame.data[label].tolist()
    found = [_text(value, row, column) for row, value in enumerate(values)]
    if model.columns and column in model.columns:
        return frame, found
    rest = tuple(name for name in frame.columns if name != column)
    if not rest:
        raise PayloadError(f"the request has only the id column {column!r} and no model input")
    data = (np.delete(frame.data, index, axis=1) if frame.kind == "block"
            else frame.data.drop(columns=[label]))
    return Frame(frame.kind, data, rest, frame.rows, frame.params), found


def v2_ids(parameters_ids, column_ids: list[str] | None, request_id: str | None, rows: int) -> list[str]:
    """The ids of an OIP v2 request's rows: ``parameters.ids``, the id input, the request ``id``
    for one row, or generated ones."""
    if parameters_ids is not None:
        if column_ids is not None:
            raise PayloadError("ids are given twice: in parameters.ids and as an input tensor")
        if not isinstance(parameters_ids, list) or len(parameters_ids) != rows:
            raise PayloadError(f"parameters.ids must be a list of one string or integer per row "
                               f"({rows} rows)")
        return [_text(value, row, "parameters.ids") for row, value in enumerate(parameters_ids)]
    if column_ids is not None:
        return column_ids
    if rows == 1 and request_id:
        return [request_id]
    return generate(rows)


def header(ids: list[str]) -> dict[str, str]:
    """The response header naming the id of a one-row request (none for several rows, nor for an
    id a header cannot carry: only printable ASCII goes into one; the body always has it)."""
    return {HEADER: ids[0]} if len(ids) == 1 and ids[0].isascii() and ids[0].isprintable() else {}


def _text(value, row: int, where: str) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str) and value:
        return value
    if isinstance(value, bool | np.bool_):
        raise PayloadError(f"{where} of row {row} is a boolean; ids are strings or integers")
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating) and math.isfinite(value):
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    raise PayloadError(f"{where} of row {row} must be a non-empty string or a number, got {value!r}")
