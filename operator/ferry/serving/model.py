"""Loading the served model once, and calling it for a frame.

Where the files come from: a local path is read in place; ``s3://`` URIs are downloaded with boto3
(credentials from ``AWS_*``, endpoint ``AWS_ENDPOINT_URL_S3`` or ``MLFLOW_S3_ENDPOINT_URL``), so a
model can be served without any tracking server; every other URI (``models:/``, ``runs:/``,
``mlflow-artifacts:/``...) is downloaded by MLflow (``MLFLOW_TRACKING_URI``) in a short-lived child
process, into a temporary folder.

How it is loaded: a model saved by ``mlflow.sklearn`` goes through ``sklearn_model`` (the estimator
and its signature, the same answers as ``pyfunc.predict``) and MLflow is never imported into the
server. Why: ``import mlflow`` (fastapi, pydantic, opentelemetry, protobuf... come with it) is
about 50 MiB of RSS on top of what scikit-learn and pandas need, a sixth of a pyfunc server, and
seconds of start-up; that is also why a download runs in a child process, which exits before the
model is served. Everything else, and every sklearn model ``sklearn_model.plan`` declines (other
loaders, code paths, tensor or unnamed signatures, params; the list is in its docstring), is loaded
by ``mlflow.pyfunc.load_model`` as before; a downloaded folder is then kept, as MLflow keeps its
own downloads, since a pyfunc model may read its artifacts after loading.

The model's MLflow input example (its serving form, an ``/invocations`` body) is kept as a
``Frame``: the default background of explanations (``explain``).
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np
import yaml

from ferry.serving.payload import Frame, ModelInputs, model_input, parse_invocations

log = logging.getLogger("ferry.serve")


@dataclass(frozen=True)
class Probabilities:
    """A classifier's ``predict_proba`` and its class labels (the order of its columns)."""

    classes: tuple[str, ...]
    predict_proba: Callable[[Any], Any]

    def of(self, frame: Frame) -> np.ndarray:
        """One row of probabilities per input row; anything else is refused."""
        values = np.asarray(self.predict_proba(model_input(frame)), dtype=np.float64)
        if values.shape != (frame.rows, len(self.classes)):
            raise ValueError(f"predict_proba returned shape {values.shape} for {frame.rows} rows and "
                             f"{len(self.classes)} classes")
        return values


@dataclass
class LoadedModel:
    """``probabilities``: set for classifiers on the scikit-learn fast path whose ``predict_proba``
    the prediction log can add (None for every other model)."""

    pyfunc: Any
    inputs: ModelInputs
    signature_inputs: list[dict]
    signature_outputs: list[dict]
    example: Frame | None = None
    probabilities: Probabilities | None = None

    def predict(self, frame: Frame) -> Any:
        data = model_input(frame)
        if frame.params:
            return self.pyfunc.predict(data, params=frame.params)
        return self.pyfunc.predict(data)


def s3_store():
    from ferry.adapters.s3 import ObjectStore

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    return ObjectStore(endpoint_url=endpoint or None)


def download_s3(uri: str, target: Path) -> Path:
    """Copy every object under an s3:// prefix into ``target``, keeping relative paths."""
    base = uri.rstrip("/") + "/"
    store = s3_store()
    objects = store.list(base)
    if not objects:
        raise FileNotFoundError(f"no model files under {uri}")
    for item in objects:
        relative = item["uri"][len(base):]
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(store.get_bytes(item["uri"]))
    return target


def load(uri: str) -> LoadedModel:
    if uri.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="ferry-model-") as folder:
            path = download_s3(uri, Path(folder))
            model = _load_sklearn(path) or _load_pyfunc(str(path))
            model.example = input_example(path, model.inputs)
    elif (local := _local_path(uri)) is not None:
        model = _load_sklearn(local) or _load_pyfunc(uri)
        model.example = input_example(local, model.inputs)
    else:
        target, keep = Path(tempfile.mkdtemp(prefix="ferry-model-")), False
        try:
            folder = download_with_mlflow(uri, target)
            model = _load_sklearn(folder)
            if model is None:
                model, keep = _load_pyfunc(str(folder)), True
            model.example = input_example(folder, model.inputs)
        finally:
            if not keep:
                shutil.rmtree(target, ignore_errors=True)
    release_memory()
    return model


def input_example(folder: Path, inputs: ModelInputs) -> Frame | None:
    """The saved input example as a frame (MLflow keeps its serving form, an ``/invocations`` body,
    next to the MLmodel file); None when there is none or it cannot be read."""
    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text()) or {}
        relative = (meta.get("saved_input_example_info") or {}).get("serving_input_path")
        if not isinstance(relative, str):
            return None
        return parse_invocations((folder / relative).read_bytes(), "application/json", inputs)
    except (OSError, ValueError, AttributeError, yaml.YAMLError) as error:
        log.info("the model's input example is not used: %s", error)
        return None


def _local_path(uri: str) -> Path | None:
    """The folder of a local model (a path or a ``file:`` URI); None for anything remote."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    return None


# Runs in a child process: MLflow resolves the URI (registry, runs, artifact stores, credentials) and
# the server never imports it. The marker line keeps the answer apart from anything MLflow prints.
_DOWNLOAD = """
import sys
from mlflow.artifacts import download_artifacts
print("\\nferry-model-path=" + download_artifacts(artifact_uri=sys.argv[1], dst_path=sys.argv[2]))
"""


def download_with_mlflow(uri: str, target: Path) -> Path:
    """Download an MLflow model URI into ``target``; returns the model's folder (in ``target``)."""
    done = subprocess.run([sys.executable, "-c", _DOWNLOAD, uri, str(target)], capture_output=True,
                          text=True, check=False)
    found = [line.split("=", 1)[1] for line in done.stdout.splitlines()
             if line.startswith("ferry-model-path=")]
    if done.returncode != 0 or not found:
        reason = [line for line in done.stderr.splitlines() if line.strip()]
        raise RuntimeError(f"MLflow could not download {uri}: "
                           f"{reason[-1] if reason else f'exit status {done.returncode}'}")
    return Path(found[-1])


def _load_sklearn(folder: Path) -> LoadedModel | None:
    """The fast path (see ``sklearn_model``); None when the model needs ``mlflow.pyfunc``."""
    from ferry.serving import sklearn_model

    plan = sklearn_model.plan(folder)
    model = sklearn_model.load(plan) if plan is not None else None
    if model is None:
        return None
    log.info("serving the scikit-learn model without MLflow (%s)", plan.model_file.name)
    signature = plan.signature or {}
    classes = model.classes()
    return LoadedModel(model, ModelInputs(model.input_names()),
                       _tensors(_json_specs(signature.get("inputs"))),
                       _tensors(_json_specs(signature.get("outputs"))),
                       probabilities=Probabilities(classes, model.predict_proba) if classes else None)


def _load_pyfunc(source: str) -> LoadedModel:
    import mlflow.pyfunc

    pyfunc = mlflow.pyfunc.load_model(source)
    metadata = pyfunc.metadata
    return LoadedModel(pyfunc, ModelInputs(_input_columns(pyfunc)),
                       _tensors(_schema_specs(metadata.get_input_schema())),
                       _tensors(_schema_specs(metadata.get_output_schema())))


def _input_columns(pyfunc) -> tuple[str, ...] | None:
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    return tuple(schema.input_names())


Spec = tuple[str | None, str, list | tuple | None]


def _tensors(specs: Iterable[Spec]) -> list[dict]:
    """v2 metadata tensors for (name, MLflow type, shape) specs (an empty list without a schema)."""
    return [{"name": name or f"input_{index}", "datatype": _V2_FROM_MLFLOW.get(kind.lower(), "BYTES"),
             "shape": list(shape or [-1])} for index, (name, kind, shape) in enumerate(specs)]


def _schema_specs(schema) -> list[Spec]:
    """Specs of an ``mlflow.types.Schema`` (column types by name, tensors by numpy dtype)."""
    if schema is None:
        return []
    return [(getattr(spec, "name", None), str(getattr(spec.type, "name", spec.type)),
             getattr(spec, "shape", None)) for spec in schema.inputs]


def _json_specs(text: str | None) -> list[Spec]:
    """The same specs from the JSON an MLmodel file keeps its signature in."""
    specs = []
    for spec in json.loads(text) if text else []:
        tensor = spec.get("tensor-spec") if spec.get("type") == "tensor" else None
        kind = tensor.get("dtype") if tensor else spec.get("type")
        specs.append((spec.get("name"), kind if isinstance(kind, str) else "",
                      tensor.get("shape") if tensor else None))
    return specs


_V2_FROM_MLFLOW = {"double": "FP64", "float": "FP32", "long": "INT64", "integer": "INT32",
                   "boolean": "BOOL", "string": "BYTES", "binary": "BYTES", "datetime": "BYTES",
                   "float64": "FP64", "float32": "FP32", "int64": "INT64", "int32": "INT32",
                   "bool": "BOOL"}


def release_memory() -> None:
    """Give the loader's garbage back to the OS and keep the model out of future GC scans."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    gc.freeze()
