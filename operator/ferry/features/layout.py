"""Where a feature version's outputs live in S3 (pure)."""

from __future__ import annotations

LATEST = "latest.json"
RESULT = "_result.json"
DATA = "part-0.parquet"


def version_prefix(bucket: str, prefix: str, feature_set: str, version: str) -> str:
    """``s3://<bucket>/<prefix>/<featureSet>/<version>/``"""
    path = "/".join(p.strip("/") for p in (prefix, feature_set, version) if p and p.strip("/"))
    return f"s3://{bucket}/{path}/"


def sibling_version(version: str, feature_set: str, feature_version: str, other_set: str,
                    other_version: str) -> str:
    """The folder of another feature version under the same bucket and prefix as ``version``
    (the folder of ``feature_set``/``feature_version``)."""
    suffix = f"{feature_set}/{feature_version}/"
    if not version.endswith(suffix):
        raise ValueError(f"{version!r} is not the folder of {suffix!r}")
    return f"{version.removesuffix(suffix)}{other_set}/{other_version}/"


def run_uri(version: str, run_id: str) -> str:
    return f"{version}{run_id}/"


def latest_uri(version: str) -> str:
    return f"{version}{LATEST}"


def result_uri(run: str) -> str:
    return f"{run}{RESULT}"


def runs_to_delete(results: list[dict], keep_last: int, latest_run: str | None) -> list[str]:
    """Run prefixes beyond the newest ``keep_last`` (by result time); never the latest one."""
    ordered = sorted(results, key=lambda r: r["modified"], reverse=True)
    stale = [r["uri"].removesuffix(RESULT) for r in ordered[keep_last:]]
    return [run for run in stale if run != latest_run]
