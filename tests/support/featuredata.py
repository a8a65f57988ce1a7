"""FeaturePipeline inputs in tests: raw data in the real S3 and the pipeline objects reading it."""

from __future__ import annotations

import io

import pyarrow as pa
import pyarrow.parquet as pq

from ferry_dev.services import BUCKET

ROWS = 40


def upload_raw_data(services, namespace: str) -> dict[str, str]:
    """Transactions as Parquet and customers as CSV in S3; the data of the credentials Secret."""
    s3 = services.s3_client()
    transactions = pa.table({
        "customer_id": [i % 10 for i in range(ROWS)],
        "amount": [float(i) * 1.5 for i in range(ROWS)],
        "country": ["DE", "FR", "NL", "US"] * (ROWS // 4),
    })
    buffer = io.BytesIO()
    pq.write_table(transactions, buffer)
    s3.put_object(Bucket=BUCKET, Key=f"raw/{namespace}/transactions/part-0.parquet",
                  Body=buffer.getvalue())
    customers = "customer_id,segment\n" + "".join(f"{i},{'gold' if i < 3 else 'basic'}\n"
                                                   for i in range(10))
    s3.put_object(Bucket=BUCKET, Key=f"raw/{namespace}/customers.csv", Body=customers.encode())
    env = services.env()
    return {"AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
            "AWS_DEFAULT_REGION": env["AWS_DEFAULT_REGION"]}


def pipeline(namespace: str, name: str, **spec) -> dict:
    return {"apiVersion": "ferry.dev/v1alpha1", "kind": "FeaturePipeline",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"featureSet": f"tx-{namespace}", "version": "v1",
                     "s3Credentials": {"name": "s3-creds"}, **spec}}


def sql_transform(namespace: str) -> dict:
    return {"sql": {
        "sources": [
            {"name": "tx", "uri": f"s3://{BUCKET}/raw/{namespace}/transactions/*.parquet"},
            {"name": "customers", "uri": f"s3://{BUCKET}/raw/{namespace}/customers.csv",
             "format": "csv"}],
        "query": "select tx.customer_id, tx.amount, ln(1 + tx.amount) as log_amount, "
                 "tx.country, c.segment from tx join customers c using (customer_id) "
                 "order by tx.amount"}}


def secret(namespace, data) -> dict:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s3-creds", "namespace": namespace}, "stringData": data}
