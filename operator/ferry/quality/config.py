"""What ``ferry quality run`` (the quality monitor CronJob's pod) runs on, as env set by
``builders.qualitymonitor``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ferry.api.inferenceservice import QualityMonitor
from ferry.podenv import JOB_NAME, NAMESPACE, FieldRef, entries, read

OPERATOR_FIELDS = {"schedule"}
"""``spec.monitoring.quality`` the pod does not need: the operator schedules."""


def load_config(text: str | None) -> QualityMonitor:
    """``spec.monitoring.quality`` as JSON."""
    return QualityMonitor.model_validate(json.loads(text) if text else {})


@dataclass(frozen=True)
class QualityConfig:
    """One monitor's settings: whose predictions (their labels and reports live under the same
    prefix, see ``quality.layout``), judged how, and whose status to patch."""

    inference_service: str
    prediction_log_uri: str
    quality: QualityMonitor = field(default_factory=QualityMonitor)
    namespace: str | FieldRef = NAMESPACE
    run_id: str | FieldRef | None = JOB_NAME  # None: the program names the run by its time

    ENV: ClassVar[dict[str, str]] = {
        "inference_service": "FERRY_INFERENCESERVICE", "namespace": "POD_NAMESPACE",
        "run_id": "FERRY_RUN_ID", "quality": "FERRY_QUALITY_CONFIG",
        "prediction_log_uri": "FERRY_PREDICTION_LOG_URI"}
    REQUIRED: ClassVar = ("inference_service", "namespace", "prediction_log_uri")

    def to_env(self) -> list[dict]:
        values = {name: getattr(self, name) for name in self.ENV} | {"quality": json.dumps(
            self.quality.model_dump(by_alias=True, exclude_none=True, exclude=OPERATOR_FIELDS),
            sort_keys=True)}
        return entries({self.ENV[name]: value for name, value in values.items()})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> QualityConfig:
        values = read(env, cls.ENV, cls.REQUIRED)
        return cls(**values | {"quality": load_config(values["quality"])})
