"""InferenceService ``spec.monitoring.drift`` → the drift monitor: a CronJob whose pod runs
``ferry drift monitor``, plus the ServiceAccount, Role and RoleBinding it runs with
(``builders.monitors``).

The pod's only API access is patching its InferenceService's status. The operator resolves the
reference (the served ModelVersion's ``status.lineage.dataUri``) and passes it in as env. S3
credentials arrive by Secret reference, never through a spec: the InferenceService's
``spec.objectStore`` (or the operator's default) as ``envFrom``, and the serving pods' own
``AWS_*`` env entries through ``extra_env``.
"""

from __future__ import annotations

from ferry.api.inferenceservice import InferenceServiceSpec
from ferry.builders.monitors import monitor_objects
from ferry.builders.objectstore import object_store_env_from
from ferry.drift.config import MonitorConfig

COMPONENT_VALUE = "drift-monitor"
SCRATCH = "/tmp/ferry-drift"


def monitor_name(infsvc_name: str) -> str:
    """CronJob/ServiceAccount/Role name; CronJob names must stay within 52 characters."""
    return f"{infsvc_name[:46]}-drift"


def build_drift_monitor(infsvc: dict, spec: InferenceServiceSpec, image: str,
                        prediction_log_uri: str, report_uri: str, reference_uri: str | None,
                        extra_env: list[dict] | None = None,
                        object_store_secret: str | None = None) -> list[dict]:
    """The drift monitor's objects, or ``[]`` when ``spec.monitoring.drift`` is unset (the
    controller then deletes the children labelled ``ferry.dev/component=drift-monitor``).

    - ``prediction_log_uri``: ``s3://bucket/prefix`` where ``ferry serve`` writes this service's
      prediction log (``<prefix>/dt=YYYY-MM-DD-HH/*.parquet``);
    - ``report_uri``: ``s3://`` prefix for reports; each run writes ``<report_uri>/<job>/drift.json``
      and ``drift.html``;
    - ``reference_uri``: the served ModelVersion's ``status.lineage.dataUri``;
      ``spec.monitoring.drift.reference`` overrides it;
    - ``extra_env``: container env entries appended last (``AWS_ENDPOINT_URL_S3``, credentials as
      ``valueFrom.secretKeyRef``); they win over the Secret's keys;
    - ``object_store_secret``: the operator's default S3 credentials Secret, used when the
      InferenceService has no ``spec.objectStore``.

    Raises ``ValueError`` when no reference is known: the controller reports that as a condition.
    """
    drift = spec.monitoring.drift
    if drift is None:
        return []
    reference = drift.reference or reference_uri
    if not reference:
        raise ValueError("spec.monitoring.drift needs a reference: the served ModelVersion has no "
                         "status.lineage.dataUri and spec.monitoring.drift.reference is not set")
    env = [
        *MonitorConfig(inference_service=infsvc["metadata"]["name"],
                       prediction_log_uri=prediction_log_uri, report_uri=report_uri, drift=drift,
                       reference=reference).to_env(),
        {"name": "TMPDIR", "value": SCRATCH},  # S3 objects are spooled here (emptyDir)
        *(extra_env or []),
    ]
    container = {
        "name": "drift", "image": image, "command": ["ferry", "drift", "monitor"], "env": env,
        "envFrom": object_store_env_from(spec.object_store, object_store_secret),
        # One column at a time: ~1 GiB covers 1M-row windows (see the drift benchmark).
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                      "limits": {"memory": "1536Mi"}},
    }
    return monitor_objects(infsvc, monitor_name(infsvc["metadata"]["name"]), COMPONENT_VALUE,
                           drift.schedule, container, SCRATCH)
