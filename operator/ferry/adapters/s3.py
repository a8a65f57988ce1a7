"""S3 through boto3: the few object operations Ferry needs, addressed by ``s3://`` URIs.

Endpoint and credentials come from the environment (``AWS_ENDPOINT_URL_S3``, ``AWS_*``), i.e. from
a Secret or the pod's service account, never from a spec.
"""

from __future__ import annotations

import io
import json
from urllib.parse import urlparse


def split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


class ObjectStoreUnavailable(Exception):
    """S3 could not be asked (no credentials, endpoint down, access denied): a condition to report
    and retry, not a reason for a reconcile to fail."""


class ObjectStore:
    def __init__(self, client=None, endpoint_url: str | None = None) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    def get_bytes(self, uri: str) -> bytes | None:
        bucket, key = split(uri)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        except (BotoCoreError, ClientError) as error:
            raise ObjectStoreUnavailable(f"{uri}: {error}") from error

    def put_bytes(self, uri: str, data: bytes) -> None:
        bucket, key = split(uri)
        self.client.put_object(Bucket=bucket, Key=key, Body=data)

    def download(self, uri: str, path) -> None:
        """Stream an object into a local file (bounded memory whatever its size)."""
        bucket, key = split(uri)
        self.client.download_file(bucket, key, str(path))

    def get_json(self, uri: str) -> dict | None:
        data = self.get_bytes(uri)
        return None if data is None else json.loads(data)

    def put_json(self, uri: str, value: dict) -> None:
        self.put_bytes(uri, json.dumps(value, indent=2, sort_keys=True).encode())

    def list(self, prefix_uri: str) -> list[dict]:
        """Objects under a prefix: dicts with uri, size and modified (datetime)."""
        bucket, prefix = split(prefix_uri)
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                          Prefix=prefix):
            for item in page.get("Contents", []):
                found.append({"uri": f"s3://{bucket}/{item['Key']}", "size": item["Size"],
                              "modified": item["LastModified"]})
        return found

    def delete(self, uris: list[str]) -> None:
        for uri in uris:
            bucket, key = split(uri)
            self.client.delete_object(Bucket=bucket, Key=key)

    def read_table(self, uri: str, fmt: str):
        """A Parquet/CSV object, or every such object under a prefix ending in '/' or '*'."""
        import pyarrow as pa
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        uris = [uri]
        if uri.endswith("/") or "*" in uri:
            base = uri.split("*", 1)[0]
            suffix = f".{fmt}" if fmt != "csv" else ".csv"
            uris = sorted(o["uri"] for o in self.list(base) if o["uri"].endswith(suffix))
        tables = []
        for item in uris:
            data = self.get_bytes(item)
            if data is None:
                raise FileNotFoundError(item)
            buffer = io.BytesIO(data)
            tables.append(pq.read_table(buffer) if fmt == "parquet" else pacsv.read_csv(buffer))
        if not tables:
            raise FileNotFoundError(f"no {fmt} objects at {uri}")
        return pa.concat_tables(tables, promote_options="default")

    def write_parquet(self, uri: str, table) -> None:
        import pyarrow.parquet as pq

        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.put_bytes(uri, buffer.getvalue())
