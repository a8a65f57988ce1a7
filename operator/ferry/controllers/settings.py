"""kopf settings, fixed before the first release: annotation prefix and finalizer live under
``ferry.dev/`` so a later storage change never makes the operator treat every object as new."""

from __future__ import annotations

import logging

import kopf

from ferry.builders.labels import MANAGED_BY
from ferry.controllers.children import CHILD_RESOURCES

PREFIX = "ferry.dev"


def configure(settings: kopf.OperatorSettings, sync_workers: int) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX, v1=False)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration", v1=False)
    settings.posting.level = logging.WARNING  # Events are posted explicitly, not from log lines
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.watching.connect_timeout = 10
    settings.watching.chunk_size = 500
    settings.execution.max_workers = sync_workers
    for group, _, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[group, plural] = f"{MANAGED_BY}=ferry"
