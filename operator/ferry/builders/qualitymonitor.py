"""InferenceService ``spec.monitoring.quality`` → the quality monitor: a CronJob whose pod runs
``ferry quality run``, plus its own ServiceAccount, Role and RoleBinding (``builders.monitors``;
the same shape and least privilege as the drift monitor's, and separate from it).

The pod reads the prediction log, the labels beside it and writes its reports beside them, all
under ``prediction_log_uri``, with the serving pods' S3 credentials (as the drift monitor).
"""

from __future__ import annotations

from ferry.api.inferenceservice import InferenceServiceSpec
from ferry.builders.monitors import monitor_objects
from ferry.builders.objectstore import object_store_env_from
from ferry.quality.config import QualityConfig

COMPONENT_VALUE = "quality-monitor"
SCRATCH = "/tmp/ferry-quality"


def monitor_name(infsvc_name: str) -> str:
    """CronJob/ServiceAccount/Role name; CronJob names must stay within 52 characters."""
    return f"{infsvc_name[:44]}-quality"


def build_quality_monitor(infsvc: dict, spec: InferenceServiceSpec, image: str,
                          prediction_log_uri: str, extra_env: list[dict] | None = None,
                          object_store_secret: str | None = None) -> list[dict]:
    """The quality monitor's objects, or ``[]`` when ``spec.monitoring.quality`` is unset.
    ``extra_env`` and ``object_store_secret`` as for ``build_drift_monitor``."""
    quality = spec.monitoring.quality
    if quality is None:
        return []
    name = infsvc["metadata"]["name"]
    env = [
        *QualityConfig(inference_service=name, prediction_log_uri=prediction_log_uri,
                       quality=quality).to_env(),
        {"name": "TMPDIR", "value": SCRATCH},  # the window's log objects are spooled here
        *(extra_env or []),
    ]
    container = {
        "name": "quality", "image": image, "command": ["ferry", "quality", "run"], "env": env,
        "envFrom": object_store_env_from(spec.object_store, object_store_secret),
        # The join runs in DuckDB over Arrow: 10M rows on each side peak near 2 GiB (benchmark).
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                      "limits": {"memory": "2560Mi"}},
    }
    return monitor_objects(infsvc, monitor_name(name), COMPONENT_VALUE, quality.schedule,
                           container, SCRATCH)
