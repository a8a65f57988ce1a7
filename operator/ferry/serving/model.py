"""Loading the MLflow pyfunc model once, and calling it for a frame.

``models:/`` and ``runs:/`` URIs go through MLflow (``MLFLOW_TRACKING_URI``); ``s3://`` URIs are
downloaded with boto3 first (credentials from ``AWS_*``, endpoint ``AWS_ENDPOINT_URL_S3`` or
``MLFLOW_S3_ENDPOINT_URL``), so a model can be served without any tracking server.
"""

from __future__ import annotations

import ctypes
import gc
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferry.serving.payload import Frame, ModelInputs, model_input


@dataclass
class LoadedModel:
    pyfunc: Any
    inputs: ModelInputs
    signature_inputs: list[dict]
    signature_outputs: list[dict]

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
    import mlflow.pyfunc

    if uri.startswith("s3://"):
        with tempfile.TemporaryDirectory(prefix="ferry-model-") as folder:
            pyfunc = mlflow.pyfunc.load_model(str(download_s3(uri, Path(folder))))
    else:
        pyfunc = mlflow.pyfunc.load_model(uri)
    model = LoadedModel(pyfunc, ModelInputs(_input_columns(pyfunc)), *_signature(pyfunc))
    release_memory()
    return model


def _input_columns(pyfunc) -> tuple[str, ...] | None:
    schema = pyfunc.metadata.get_input_schema()
    if schema is None or schema.is_tensor_spec() or not schema.has_input_names():
        return None
    return tuple(schema.input_names())


def _signature(pyfunc) -> tuple[list[dict], list[dict]]:
    """v2 metadata tensors from the MLflow signature (empty lists when there is none)."""
    def tensors(schema) -> list[dict]:
        if schema is None:
            return []
        found = []
        for index, spec in enumerate(schema.inputs):
            name = getattr(spec, "name", None) or f"input_{index}"
            kind = str(getattr(spec.type, "name", spec.type)).lower()
            found.append({"name": name, "datatype": _V2_FROM_MLFLOW.get(kind, "BYTES"),
                          "shape": list(getattr(spec, "shape", None) or [-1])})
        return found

    metadata = pyfunc.metadata
    return tensors(metadata.get_input_schema()), tensors(metadata.get_output_schema())


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
