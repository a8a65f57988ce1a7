"""What ``ferry drift monitor`` (the drift monitor CronJob's pod) runs on, as env set by
``builders.driftmonitor``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from ferry.api.inferenceservice import DriftMonitor
from ferry.podenv import JOB_NAME, NAMESPACE, FieldRef, entries, read

OPERATOR_FIELDS = {"on_drift", "schedule"}
"""``spec.monitoring.drift`` the pod does not need: the operator schedules and retrains."""


def load_config(text: str | None) -> DriftMonitor:
    """``spec.monitoring.drift`` as JSON (the same shape for the CLI and the operator)."""
    return DriftMonitor.model_validate(json.loads(text) if text else {})


@dataclass(frozen=True)
class MonitorConfig:
    """One monitor's settings: whose predictions, compared with what, reported where."""

    inference_service: str
    prediction_log_uri: str
    report_uri: str
    drift: DriftMonitor = field(default_factory=DriftMonitor)
    reference: str | None = None        # default: ``drift.reference``
    namespace: str | FieldRef = NAMESPACE
    run_id: str | FieldRef | None = JOB_NAME  # None: the program names the run by its time
    pushgateway_url: str | None = None  # set by hand only: the operator passes no Pushgateway

    ENV: ClassVar[dict[str, str]] = {
        "inference_service": "FERRY_INFERENCESERVICE", "namespace": "POD_NAMESPACE",
        "run_id": "FERRY_RUN_ID", "drift": "FERRY_DRIFT_CONFIG",
        "reference": "FERRY_DRIFT_REFERENCE", "prediction_log_uri": "FERRY_PREDICTION_LOG_URI",
        "report_uri": "FERRY_DRIFT_REPORT_URI", "pushgateway_url": "FERRY_PUSHGATEWAY_URL"}
    REQUIRED: ClassVar = ("inference_service", "namespace", "prediction_log_uri", "report_uri")

    def to_env(self) -> list[dict]:
        values = {name: getattr(self, name) for name in self.ENV} | {"drift": json.dumps(
            self.drift.model_dump(by_alias=True, exclude_none=True, exclude=OPERATOR_FIELDS),
            sort_keys=True)}
        return entries({self.ENV[name]: value for name, value in values.items()})

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> MonitorConfig:
        values = read(env, cls.ENV, cls.REQUIRED)
        return cls(**values | {"drift": load_config(values["drift"])})
