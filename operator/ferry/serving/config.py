"""Settings of ``ferry serve``: command-line flags win over environment variables.

The environment names are the contract with the InferenceService controller, which sets them on
the serving Deployment; see ``ServeConfig.from_env``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlparse

DEFAULT_BUCKETS = tuple(round(i * 0.05, 2) for i in range(21))


class ConfigError(ValueError):
    """A setting has a value the server cannot use; the message names the setting."""


@dataclass(frozen=True)
class ServeConfig:
    model_uri: str
    model_name: str
    model_version: str
    host: str = "0.0.0.0"
    port: int = 8080
    grpc_port: int = 8081
    workers: int = 1
    prediction_log_uri: str | None = None
    id_column: str = "id"
    prediction_sample_rate: float = 0.1
    prediction_log_batch_rows: int = 1000
    prediction_log_flush_seconds: float = 10.0
    prediction_log_max_rows: int = 100_000
    prediction_buckets: tuple[float, ...] = DEFAULT_BUCKETS
    mirror_url: str | None = None
    mirror_percent: float = 0.0
    mirror_queue_size: int = 1000
    max_batch_rows: int = 4096
    shutdown_timeout_seconds: float = 30.0
    shutdown_delay_seconds: float = 0.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **flags) -> ServeConfig:
        """Build from ``env`` (default ``os.environ``); keyword ``flags`` that are not None win.

        Variables: FERRY_MODEL_URI (required), POD_IP, FERRY_PORT, FERRY_MODEL_NAME,
        FERRY_MODEL_VERSION, FERRY_PREDICTION_LOG_URI, FERRY_ID_COLUMN (the request column that
        carries prediction ids, default ``id``; see ``ids``), FERRY_PREDICTION_SAMPLE_RATE,
        FERRY_PREDICTION_LOG_BATCH_ROWS, FERRY_PREDICTION_LOG_FLUSH_SECONDS,
        FERRY_PREDICTION_LOG_MAX_ROWS, FERRY_PREDICTION_BUCKETS, FERRY_MIRROR_URL,
        FERRY_MIRROR_PERCENT, FERRY_MIRROR_QUEUE_SIZE, FERRY_MAX_BATCH_ROWS,
        FERRY_SHUTDOWN_TIMEOUT_SECONDS, FERRY_SHUTDOWN_DELAY_SECONDS, FERRY_GRPC_PORT (0 turns gRPC
        off), FERRY_WORKERS (default 1: one process, whose
        readiness turns 503 while the model loads; ``auto``: the CPUs this process may use, see
        ``available_cpus``; a pool opens its ports only once the model is loaded).
        """
        env = os.environ if env is None else env

        def pick(flag: str, var: str, default=None):
            value = flags.get(flag)
            if value is not None:
                return value
            raw = env.get(var, "")
            return raw if raw.strip() else default

        model_uri = pick("model_uri", "FERRY_MODEL_URI")
        if not model_uri:
            raise ConfigError("a model URI is required: --model-uri or FERRY_MODEL_URI")
        default_name, default_version = names_from_uri(model_uri)
        log_uri = env.get("FERRY_PREDICTION_LOG_URI", "").strip()
        if log_uri and not log_uri.startswith("s3://"):
            raise ConfigError(f"FERRY_PREDICTION_LOG_URI must be an s3:// URI, got {log_uri!r}")
        mirror_url = env.get("FERRY_MIRROR_URL", "").strip()
        if mirror_url and urlparse(mirror_url).scheme not in ("http", "https"):
            raise ConfigError(f"FERRY_MIRROR_URL must be http://host:port, got {mirror_url!r}")
        return cls(
            model_uri=model_uri,
            model_name=pick("model_name", "FERRY_MODEL_NAME", default_name),
            model_version=str(pick("model_version", "FERRY_MODEL_VERSION", default_version)),
            host=pick("host", "POD_IP", "0.0.0.0"),
            port=_number(pick("port", "FERRY_PORT", 8080), "FERRY_PORT", int, 0, 65535),
            grpc_port=_number(pick("grpc_port", "FERRY_GRPC_PORT", 8081), "FERRY_GRPC_PORT", int, 0,
                              65535),
            workers=_number(_workers(pick("workers", "FERRY_WORKERS", None)),
                            "FERRY_WORKERS", int, 1, 256),
            prediction_log_uri=log_uri.rstrip("/") if log_uri else None,
            id_column=pick("id_column", "FERRY_ID_COLUMN", "id"),
            prediction_sample_rate=_number(env.get("FERRY_PREDICTION_SAMPLE_RATE") or 0.1,
                                           "FERRY_PREDICTION_SAMPLE_RATE", float, 0, 1),
            prediction_log_batch_rows=_number(env.get("FERRY_PREDICTION_LOG_BATCH_ROWS") or 1000,
                                              "FERRY_PREDICTION_LOG_BATCH_ROWS", int, 1, None),
            prediction_log_flush_seconds=_number(
                env.get("FERRY_PREDICTION_LOG_FLUSH_SECONDS") or 10,
                "FERRY_PREDICTION_LOG_FLUSH_SECONDS", float, 0.01, None),
            prediction_log_max_rows=_number(env.get("FERRY_PREDICTION_LOG_MAX_ROWS") or 100_000,
                                            "FERRY_PREDICTION_LOG_MAX_ROWS", int, 1, None),
            prediction_buckets=parse_buckets(env.get("FERRY_PREDICTION_BUCKETS", "")),
            mirror_url=mirror_url.rstrip("/") if mirror_url else None,
            mirror_percent=_number(env.get("FERRY_MIRROR_PERCENT") or 0,
                                   "FERRY_MIRROR_PERCENT", float, 0, 100),
            mirror_queue_size=_number(env.get("FERRY_MIRROR_QUEUE_SIZE") or 1000,
                                      "FERRY_MIRROR_QUEUE_SIZE", int, 1, None),
            max_batch_rows=_number(env.get("FERRY_MAX_BATCH_ROWS") or 4096,
                                   "FERRY_MAX_BATCH_ROWS", int, 1, None),
            shutdown_timeout_seconds=_number(env.get("FERRY_SHUTDOWN_TIMEOUT_SECONDS") or 30,
                                             "FERRY_SHUTDOWN_TIMEOUT_SECONDS", float, 0, None),
            shutdown_delay_seconds=_number(env.get("FERRY_SHUTDOWN_DELAY_SECONDS") or 0,
                                           "FERRY_SHUTDOWN_DELAY_SECONDS", float, 0, None),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that makes ``from_env`` return this config (the builder's side)."""
        values = {
            "FERRY_MODEL_URI": self.model_uri, "FERRY_MODEL_NAME": self.model_name,
            "FERRY_MODEL_VERSION": self.model_version, "POD_IP": self.host,
            "FERRY_PORT": self.port, "FERRY_GRPC_PORT": self.grpc_port,
            "FERRY_WORKERS": self.workers,
            "FERRY_PREDICTION_LOG_URI": self.prediction_log_uri,
            "FERRY_ID_COLUMN": self.id_column,
            "FERRY_PREDICTION_SAMPLE_RATE": self.prediction_sample_rate,
            "FERRY_PREDICTION_LOG_BATCH_ROWS": self.prediction_log_batch_rows,
            "FERRY_PREDICTION_LOG_FLUSH_SECONDS": self.prediction_log_flush_seconds,
            "FERRY_PREDICTION_LOG_MAX_ROWS": self.prediction_log_max_rows,
            "FERRY_PREDICTION_BUCKETS": ",".join(repr(b) for b in self.prediction_buckets),
            "FERRY_MIRROR_URL": self.mirror_url, "FERRY_MIRROR_PERCENT": self.mirror_percent,
            "FERRY_MIRROR_QUEUE_SIZE": self.mirror_queue_size,
            "FERRY_MAX_BATCH_ROWS": self.max_batch_rows,
            "FERRY_SHUTDOWN_TIMEOUT_SECONDS": self.shutdown_timeout_seconds,
            "FERRY_SHUTDOWN_DELAY_SECONDS": self.shutdown_delay_seconds,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


def _workers(value) -> int | str:
    """An explicit count, ``auto`` (the CPUs available), or one process when unset."""
    if value is None or value == "":
        return 1
    return available_cpus() if str(value) == "auto" else value


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Whole CPUs this process may use: the cgroup v2 quota (``cpu.max``, a container's CPU limit)
    rounded up, capped by the CPUs the scheduler lets it run on; at least 1."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = open(os.path.join(cgroup_root, "cpu.max")).read().split()[:2]
        if quota != "max":
            cpus = min(cpus, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def names_from_uri(uri: str) -> tuple[str, str]:
    """Default (model name, version label) from a model URI.

    ``models:/fraud/3`` → (fraud, 3); ``models:/fraud@champion`` → (fraud, champion): the alias is
    the label unless FERRY_MODEL_VERSION names the number (the InferenceService controller does);
    ``runs:/<id>/model`` → (model, <id>); an s3:// or local path → (last path part, "unversioned").
    """
    if uri.startswith("models:/"):
        rest = uri[len("models:/"):].strip("/")
        if "@" in rest:
            name, _, alias = rest.partition("@")
            return name, alias
        name, _, version = rest.rpartition("/")
        return (name, version) if name else (version, "latest")
    if uri.startswith("runs:/"):
        run_id, _, path = uri[len("runs:/"):].strip("/").partition("/")
        return (path.rstrip("/").rsplit("/", 1)[-1] or "model"), run_id
    path = urlparse(uri).path if "://" in uri else uri
    return (path.rstrip("/").rsplit("/", 1)[-1] or "model"), "unversioned"


def parse_buckets(raw: str) -> tuple[float, ...]:
    """Histogram upper bounds from a comma list (sorted, de-duplicated); empty → the default."""
    if not raw.strip():
        return DEFAULT_BUCKETS
    try:
        values = sorted({float(part) for part in raw.split(",") if part.strip()})
    except ValueError as error:
        raise ConfigError(f"FERRY_PREDICTION_BUCKETS must be a comma list of numbers: {error}") from None
    if not values:
        raise ConfigError("FERRY_PREDICTION_BUCKETS names no bucket")
    return tuple(values)


def _number(value, name: str, kind, low, high):
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} must be a{'n integer' if kind is int else ' number'}, "
                          f"got {value!r}") from None
    if (low is not None and number < low) or (high is not None and number > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(f"{name} must be {bounds}, got {value!r}")
    return number
