"""Run test code in-process with the services' client environment (MLflow, S3), then restore it."""

from __future__ import annotations

import os
from contextlib import contextmanager


@contextmanager
def services_environment(services):
    previous = {k: os.environ.get(k) for k in services.env()}
    os.environ.update(services.env())
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
