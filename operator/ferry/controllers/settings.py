"""kopf settings, fixed before the first release: the finalizer and the deletion handlers'
progress annotations live under ``ferry.dev/``.

kopf keeps no diff base for Ferry's kinds: changes are found by ``metadata.generation`` in the
work queue (``_worker``), and the only changing handlers are deletion handlers, which never need
one. kopf's default would write a last-handled-configuration annotation to every new object, one
API write per object that nothing reads.
"""

from __future__ import annotations

import logging

import kopf

from ferry.builders.labels import MANAGED_BY
from ferry.controllers.children import CHILD_RESOURCES

PREFIX = "ferry.dev"


class NoDiffBase(kopf.DiffBaseStorage):
    def fetch(self, *, body: kopf.Body) -> None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: kopf.OperatorSettings, sync_workers: int) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX, v1=False)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.WARNING  # Events are posted explicitly, not from log lines
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    settings.watching.connect_timeout = 10
    settings.watching.chunk_size = 500
    settings.execution.max_workers = sync_workers
    for group, _, plural in CHILD_RESOURCES:
        settings.watching.label_selectors[group, plural] = f"{MANAGED_BY}=ferry"
