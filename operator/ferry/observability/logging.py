"""Structured JSON logging: one object per line, with the Kubernetes object when kopf knows it."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, UTC

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        # kopf's per-object loggers attach the object reference as `k8s_ref`.
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            entry["object"] = {k: ref.get(k) for k in ("kind", "namespace", "name") if ref.get(k)}
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in {"k8s_ref", "k8s_skip", "settings"}:
                try:
                    json.dumps(value)
                except TypeError:
                    value = repr(value)
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("urllib3", "kubernetes.client.rest", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
