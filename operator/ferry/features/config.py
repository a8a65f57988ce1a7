"""What ``ferry features run|validate`` (a FeaturePipeline Job's pod) runs on, as env set by
``builders.featurepipeline``; a container transform gets the same env."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from ferry.podenv import JOB_NAME, FieldRef, entries, read


@dataclass(frozen=True)
class JobConfig:
    """One run: the pipeline's spec, its version's folder, which run this is."""

    pipeline: dict                      # the FeaturePipeline spec, as JSON
    version_uri: str
    run_id: str | FieldRef = JOB_NAME
    s3_endpoint: str | None = None
    interval_start: str | None = None   # a backfill run's [start, end)
    interval_end: str | None = None

    ENV: ClassVar[dict[str, str]] = {
        "interval_start": "FERRY_INTERVAL_START", "interval_end": "FERRY_INTERVAL_END",
        "run_id": "FERRY_RUN_ID", "feature_set": "FERRY_FEATURE_SET",
        "feature_version": "FERRY_FEATURE_VERSION", "version_uri": "FERRY_VERSION_URI",
        "output_uri": "FERRY_OUTPUT_URI", "pipeline": "FERRY_PIPELINE",
        "s3_endpoint": "AWS_ENDPOINT_URL_S3"}
    DERIVED: ClassVar = ("feature_set", "feature_version", "output_uri")
    """For a container transform; the program derives them from the rest."""
    REQUIRED: ClassVar = ("pipeline", "version_uri", "run_id")
    INTERVAL: ClassVar = ("interval_start", "interval_end")

    def to_env(self) -> list[dict]:
        values = {name: getattr(self, name) for name in self.ENV if name not in self.DERIVED}
        values |= {
            "pipeline": json.dumps(self.pipeline, sort_keys=True),
            "feature_set": self.pipeline["featureSet"],
            "feature_version": self.pipeline["version"],
            # the kubelet expands both (defined earlier in the list): this run's folder
            "output_uri": f"$({self.ENV['version_uri']})$({self.ENV['run_id']})/"}
        return entries({self.ENV[name]: values[name] for name in self.ENV})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> JobConfig:
        values = read(env, {name: variable for name, variable in cls.ENV.items()
                            if name not in cls.DERIVED}, cls.REQUIRED)
        return cls(**values | {"pipeline": json.loads(values["pipeline"])})

    def sql_variables(self) -> dict[str, str]:
        """A backfill run's interval as DuckDB variables named like its env, in lower case."""
        return {self.ENV[name].lower(): getattr(self, name) for name in self.INTERVAL
                if getattr(self, name) is not None}
