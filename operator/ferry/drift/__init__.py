"""Drift detection: exact statistics, bounded-memory Parquet reading, reports, `ferry drift`."""
