"""scikit-learn models served without MLflow in the process (the fast path of ``model.load``).

A scikit-learn model needs only sklearn, pandas and its pickle; importing MLflow for
``mlflow.pyfunc`` adds about 50 MiB of RSS and seconds of start-up to the server (``model``'s
docstring). For a model saved by ``mlflow.sklearn`` this module reads the MLmodel file, unpickles
the estimator as ``mlflow.sklearn`` does (pickle, cloudpickle, or skops with the flavor's trusted
types) and applies the input signature as ``PyFuncModel.predict`` does for a column-based schema:
required columns must be present, columns are taken in the signature's order (extra ones are
dropped), and each column gets exactly the conversions MLflow's schema enforcement allows (safe
upcasts, int64 0/1 to float, object columns inferred, numeric strings to double) or a
``SignatureError`` (400, like MLflow's error). Then it calls the estimator's ``predict_fn``
(``predict``, or ``predict_proba`` and the like) as the sklearn pyfunc wrapper does, so the answers
are those of ``mlflow.pyfunc.load_model(path).predict(frame)``. Params are ignored, as MLflow
ignores them without a params schema.

``plan`` returns None, and the caller loads the model through ``mlflow.pyfunc``, for everything this
module does not reproduce exactly: other flavors or loader modules, code paths, a model config,
external artifacts, an unknown serialization format or ``predict_fn``, a signature with tensors,
unnamed columns, types other than double/float/long/integer/boolean/string, a params schema, or
a type-hint signature; and when ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION`` forbids unpickling (so MLflow
reports that refusal itself).
"""

from __future__ import annotations

import json
import logging
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

log = logging.getLogger("ferry.serve")

LOADER_MODULE = "mlflow.sklearn"
FORMATS = ("pickle", "cloudpickle", "skops")
# The methods mlflow.sklearn's pyfunc wrapper exposes besides predict (``score`` needs labels).
PREDICT_FNS = ("predict", "predict_proba", "predict_log_proba", "predict_joint_log_proba")
COLUMN_TYPES = {"boolean": np.dtype(np.bool_), "integer": np.dtype(np.int32),
                "long": np.dtype(np.int64), "float": np.dtype(np.float32),
                "double": np.dtype(np.float64), "string": np.dtype(object)}


class SignatureError(ValueError):
    """The input does not match the model's signature: the client's fault (HTTP 400), carrying
    the ``error_code`` MLflow uses for the same failure."""

    error_code = "INVALID_PARAMETER_VALUE"

    @property
    def message(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class Plan:
    """What the MLmodel file says about a model this module can serve."""

    model_file: Path
    serialization_format: str
    trusted_types: list[str] | None
    predict_fn: str
    columns: tuple[Column, ...] | None
    signature: dict | None


class SklearnModel:
    """An estimator behind the pyfunc ``predict(data, params=None)`` interface."""

    def __init__(self, estimator: Any, plan: Plan) -> None:
        self.estimator = estimator
        self.columns = plan.columns
        self.signature = plan.signature
        self._predict = getattr(estimator, plan.predict_fn)
        self._labels = plan.predict_fn == "predict"
        self._warned_params = False

    def predict(self, data, params: dict | None = None):
        if params and not self._warned_params:
            self._warned_params = True
            log.warning("the model's signature defines no params: ignoring %s", sorted(params))
        if self.columns is not None:
            data = enforce(data, self.columns)
        return self._predict(data)

    def classes(self) -> tuple[str, ...] | None:
        """The class labels, when ``predict`` answers labels and the estimator has
        ``predict_proba`` (the prediction log's probability columns); None otherwise."""
        classes = getattr(self.estimator, "classes_", None)
        if not self._labels or classes is None or np.ndim(classes) != 1 \
                or not hasattr(self.estimator, "predict_proba"):
            return None
        return tuple(str(label) for label in classes)

    def predict_proba(self, data):
        """Class probabilities for the input ``predict`` gets (same signature enforcement)."""
        if self.columns is not None:
            data = enforce(data, self.columns)
        return self.estimator.predict_proba(data)

    def input_names(self) -> tuple[str, ...] | None:
        return None if self.columns is None else tuple(column.name for column in self.columns)


def plan(model_dir: Path) -> Plan | None:
    """The fast-path plan for a local MLflow model folder, or None when MLflow must load it."""
    if _env_forbids_unpickling():
        return None
    try:
        meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(meta, dict):
        return None
    flavors = meta.get("flavors") or {}
    pyfunc, sklearn = flavors.get("python_function"), flavors.get("sklearn")
    if not isinstance(pyfunc, dict) or not isinstance(sklearn, dict):
        return None
    if (pyfunc.get("loader_module") != LOADER_MODULE or pyfunc.get("code") or sklearn.get("code")
            or pyfunc.get("model_config") or pyfunc.get("streamable")
            or (meta.get("metadata") or {}).get("mlflow.model.isExternal")):
        return None
    serialization = sklearn.get("serialization_format", "pickle")
    predict_fn = pyfunc.get("predict_fn", "predict")
    # Older MLmodel files name the pickle under ``data``, newer ones under ``model_path``.
    relative = pyfunc.get("data") or pyfunc.get("model_path")
    if serialization not in FORMATS or predict_fn not in PREDICT_FNS or not isinstance(relative, str):
        return None
    model_file = model_dir / relative
    if not model_file.is_file():
        return None
    signature = meta.get("signature")
    if meta.get("is_signature_from_type_hint") or meta.get("type_hint_from_example"):
        return None
    columns = None
    if signature:
        columns = _columns(signature)
        if columns is None:
            return None
    return Plan(model_file, serialization, sklearn.get("skops_trusted_types"), predict_fn, columns,
                signature or None)


def load(plan: Plan) -> SklearnModel | None:
    """Unpickle the estimator; None when it lacks the ``predict_fn`` (MLflow reports that)."""
    if plan.serialization_format == "skops":
        import skops.io

        estimator = skops.io.load(plan.model_file, trusted=plan.trusted_types)
    else:
        with plan.model_file.open("rb") as handle:
            if plan.serialization_format == "cloudpickle":
                import cloudpickle

                estimator = cloudpickle.load(handle)
            else:
                estimator = pickle.load(handle)
    if not callable(getattr(estimator, plan.predict_fn, None)):
        return None
    return SklearnModel(estimator, plan)


def _env_forbids_unpickling() -> bool:
    value = os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION")
    return value is not None and value.strip().lower() not in ("true", "1")


def _columns(signature: dict) -> tuple[Column, ...] | None:
    """The named scalar columns of the input schema, or None for anything else."""
    if signature.get("params"):
        return None
    try:
        specs = json.loads(signature.get("inputs") or "[]")
    except (TypeError, ValueError):
        return None
    if not isinstance(specs, list) or not specs:
        return None
    columns = []
    for spec in specs:
        if (not isinstance(spec, dict) or spec.get("type") not in COLUMN_TYPES
                or not isinstance(spec.get("name"), str)):
            return None
        columns.append(Column(spec["name"], spec["type"], spec.get("required", True) is not False))
    return tuple(columns)


# -- schema enforcement ------------------------------------------------------------------------


def enforce(data, columns: tuple[Column, ...]):
    """The DataFrame the estimator gets: signature columns in order, each converted as MLflow's
    schema enforcement converts it. Every failure is a ``SignatureError``."""
    try:
        return _enforce(data, columns)
    except SignatureError:
        raise
    except Exception as error:  # noqa: BLE001 - MLflow reports any enforcement failure as the input's
        raise SignatureError(f"failed to enforce the model's input schema: {error}") from error


def _enforce(data, columns: tuple[Column, ...]):
    import pandas as pd

    if isinstance(data, pd.Series | list | np.ndarray):
        data = pd.DataFrame(data)
    if not isinstance(data, pd.DataFrame):
        raise SignatureError(f"Expected input to be DataFrame. Found: {type(data).__name__}")
    present = set(data.columns)
    missing = [column.name for column in columns if column.required and column.name not in present]
    if missing:
        raise SignatureError(f"Model is missing inputs {missing}.")
    if list(data.columns) == [column.name for column in columns] and all(
            dtype == COLUMN_TYPES[column.type] for dtype, column in zip(data.dtypes, columns, strict=True)):
        return data  # the common case: already in order and of the right types
    converted = {column.name: convert(column.name, data[column.name], column.type)
                 for column in columns if column.name in present}
    return pd.DataFrame(converted)


def convert(name: str, values, kind: str):
    """One column to the signature type ``kind``, allowing only what MLflow allows: object columns
    are inferred first; strings accept object/string columns; booleans accept object columns as
    they are; doubles accept object columns pandas can read as numbers; otherwise a same-kind upcast,
    (u)int of at most 32 bits to double, or int64 0/1 (and nulls) to float/double."""
    import pandas as pd

    target = COLUMN_TYPES[kind]
    if values.dtype == object and kind != "string":
        values = values.infer_objects()
    if kind == "string":
        if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
            return values
        target = np.dtype(str)
    if values.dtype == target:
        return values
    if values.dtype == object:
        if kind == "boolean":
            return values  # MLflow keeps None as None rather than turning it into False
        if kind == "double":
            try:
                return pd.to_numeric(values, errors="raise")
            except (ValueError, TypeError):
                raise SignatureError(f"Failed to convert column {name} from type {values.dtype} "
                                     f"to {kind}.") from None
    found = values.dtype
    if found.kind == target.kind:
        upcast = found.itemsize <= target.itemsize
    elif found.kind == "u" and target.kind == "i":
        upcast = found.itemsize < target.itemsize
    elif found.kind in "iu" and target == np.float64:
        upcast = found.itemsize <= 6
    else:
        upcast = False
    if upcast or (found == np.int64 and target.kind == "f"
                  and all(pd.isnull(x) or x in (0, 1) for x in values)):
        return values.astype(target, errors="raise")
    raise SignatureError(f"Incompatible input types for column {name}. "
                         f"Can not safely convert {found} to {target}.")
