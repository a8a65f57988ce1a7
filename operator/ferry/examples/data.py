"""Synthetic fraud transactions: 20 float features and an ``is_fraud`` label, deterministic per seed.

The label follows a fixed logistic model of the features (the same for every seed), so a classifier
can learn it and a drifted sample (``drift``: the mean of the first ``drift_features`` columns
shifted by that many standard deviations) is measurably different from the training data.

    python -m ferry.examples.data --rows 4000 --out s3://ferry/raw/transactions/part-0.parquet
    python -m ferry.examples.data --rows 1000 --drift 1.5 --out /tmp/drifted/   # part-0.parquet
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

FEATURES = 20
TARGET = "is_fraud"
FRAUD_RATE = 0.08
# The "true" model behind the labels: fixed, so every seed samples the same concept.
_WEIGHTS = np.random.default_rng(20240601).normal(0.0, 1.0, FEATURES)


def feature_names(count: int = FEATURES) -> list[str]:
    return [f"f{i:02d}" for i in range(count)]


def transactions(rows: int, seed: int = 0, drift: float = 0.0, drift_features: int = 5):
    """A pyarrow Table of ``rows`` transactions: columns f00..f19 (float64) and is_fraud (int64)."""
    import pyarrow as pa

    if rows < 1:
        raise ValueError("rows must be at least 1")
    rng = np.random.default_rng(seed)
    values = rng.normal(0.0, 1.0, (rows, FEATURES))
    logits = values @ _WEIGHTS / np.sqrt(FEATURES) * 3.0
    # Pick the intercept on the undrifted sample so the base rate is ~FRAUD_RATE.
    intercept = -np.quantile(logits, 1.0 - FRAUD_RATE) if rows > 1 else 0.0
    values[:, :drift_features] += drift
    logits = values @ _WEIGHTS / np.sqrt(FEATURES) * 3.0 + intercept
    labels = rng.random(rows) < 1.0 / (1.0 + np.exp(-logits))
    columns = {name: values[:, i] for i, name in enumerate(feature_names())}
    columns[TARGET] = labels.astype(np.int64)
    return pa.table(columns)


def write(table, out: str) -> str:
    """Write Parquet to a local path or ``s3://`` URI; a trailing '/' means ``<out>part-0.parquet``."""
    import io

    import pyarrow.parquet as pq

    if out.endswith("/"):
        out = f"{out}part-0.parquet"
    if out.startswith("s3://"):
        from ferry.examples.storage import object_store

        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        object_store().put_bytes(out, buffer.getvalue())
    else:
        from pathlib import Path

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferry.examples.data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift", type=float, default=0.0,
                        help="mean shift, in standard deviations, of the drifted features")
    parser.add_argument("--drift-features", type=int, default=5,
                        help="how many features (f00, f01, ...) drift")
    parser.add_argument("--out", required=True, help="file, directory/ or s3:// URI")
    args = parser.parse_args(argv)
    table = transactions(args.rows, args.seed, args.drift, args.drift_features)
    written = write(table, args.out)
    frauds = int(np.sum(table.column(TARGET).to_numpy()))
    print(f"wrote {table.num_rows} rows ({frauds} fraud) to {written}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
