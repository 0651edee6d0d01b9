"""Catalogue of the audit event codes that pulling from a PACS writes."""

from __future__ import annotations

from enum import StrEnum


class PullEvent(StrEnum):
    """Audit event codes of the pull intake (``<subject>.<what happened>``)."""

    #: A new series was retrieved from a source; its instances were offered to admission.
    SERIES_RETRIEVED = "pull.series_retrieved"
    #: Retrieving one series failed (refused, unreachable, cut off); tried again next poll.
    SERIES_FAILED = "pull.series_failed"
    #: A series failed pull.max_attempts times: no longer retried (nor holding the watermark).
    SERIES_GIVEN_UP = "pull.series_given_up"
    #: A source could not be queried (unreachable, refused, a reply beyond our bounds).
    QUERY_FAILED = "pull.query_failed"
