"""Where the example trainer reads features and keeps checkpoints: a local path or ``s3://``.

S3 goes through boto3 with the standard ``AWS_*`` environment; the endpoint is
``AWS_ENDPOINT_URL_S3`` (boto3 reads it itself) or, as MLflow clients are used to,
``MLFLOW_S3_ENDPOINT_URL``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ferry.adapters.s3 import ObjectStore

PARQUET = ".parquet"
LATEST = "latest.json"  # a FeaturePipeline version folder points at its last good run with it


def object_store() -> ObjectStore:
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    return ObjectStore(endpoint_url=endpoint or None)


def read_features(uri: str):
    """A pyarrow Table from a Parquet file, or from every ``*.parquet`` under a folder / prefix.

    A FeaturePipeline *version* prefix (one holding ``latest.json``) is followed to its latest
    good run, so both ``status.latestOutputUri`` and the version folder work.
    """
    import pyarrow.parquet as pq

    if uri.startswith("s3://"):
        store = object_store()
        if not uri.endswith(PARQUET) and not uri.endswith("/"):
            uri += "/"
        if uri.endswith("/"):
            latest = store.get_json(f"{uri}{LATEST}")
            if latest and latest.get("uri"):
                uri = latest["uri"]
        return store.read_table(uri, "parquet")
    path = Path(uri)
    if path.is_dir():
        latest = path / LATEST
        if latest.exists():
            return read_features(json.loads(latest.read_text())["uri"])
        parts = sorted(path.glob(f"*{PARQUET}"))
        if not parts:
            raise FileNotFoundError(f"no parquet files in {uri}")
        import pyarrow as pa

        return pa.concat_tables([pq.read_table(p) for p in parts], promote_options="default")
    return pq.read_table(path)


class Folder:
    """A flat namespace of named blobs under a local directory or an S3 prefix."""

    def __init__(self, uri: str) -> None:
        self.uri = uri if uri.endswith("/") else f"{uri}/"
        self.store = object_store() if self.uri.startswith("s3://") else None

    def put(self, name: str, data: bytes) -> None:
        if self.store:
            self.store.put_bytes(self.uri + name, data)
            return
        target = Path(self.uri) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        partial.write_bytes(data)
        partial.replace(target)  # atomic on one filesystem

    def get(self, name: str) -> bytes | None:
        if self.store:
            return self.store.get_bytes(self.uri + name)
        target = Path(self.uri) / name
        return target.read_bytes() if target.exists() else None

    def names(self) -> list[str]:
        """Every blob name under the folder, relative to it."""
        if self.store:
            return [o["uri"].removeprefix(self.uri) for o in self.store.list(self.uri)]
        root = Path(self.uri)
        if not root.exists():
            return []
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    def delete(self, names: list[str]) -> None:
        if self.store:
            self.store.delete([self.uri + n for n in names])
            return
        for name in names:
            path = Path(self.uri) / name
            path.unlink(missing_ok=True)
            if path.parent != Path(self.uri) and not any(path.parent.iterdir()):
                path.parent.rmdir()
