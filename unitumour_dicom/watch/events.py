"""Catalogue of the audit event codes the watched folder writes."""

from __future__ import annotations

from enum import StrEnum


class WatchEvent(StrEnum):
    """Audit codes of the watched folder: one per thing that happens to a dropped file."""

    #: A vendor file was converted and every instance of it admitted; its slide settles now.
    FILE_CONVERTED = "watch.converted"
    #: The same bytes were dropped again: not converted twice, the copy moved to done/.
    FILE_DUPLICATE = "watch.duplicate"
    #: The file could not be converted or admitted; it is in failed/ with the reason beside it.
    FILE_FAILED = "watch.failed"
    #: A file left half-done by a crash (its row still "converting") is converted again.
    FILE_RETRIED = "watch.retried"
    #: No sidecar and no file-name match: the slide carries a generated, marked identity.
    IDENTITY_GENERATED = "watch.identity_generated"
    #: The watcher started or stopped.
    WATCH_STARTED = "watch.started"
    WATCH_STOPPED = "watch.stopped"
