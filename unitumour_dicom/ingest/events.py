"""Catalogue of the audit event codes that ingest writes.

Every code is ``<subject>.<what happened>`` so the audit pages can filter by subject. The
catalogue is the one place a code is spelled: ingest writes codes only as members of
:class:`IngestEvent`.
"""

from __future__ import annotations

from enum import StrEnum


class IngestEvent(StrEnum):
    """Audit event codes of the listener, the series tracker and the reconcile."""

    #: An association passed the admission policy and was accepted.
    ASSOCIATION_ACCEPTED = "association.accepted"
    #: An association was refused (unknown caller, wrong called AE, TLS, limit, database down).
    ASSOCIATION_REJECTED = "association.rejected"
    #: The peer aborted, or the connection dropped, before a release.
    ASSOCIATION_ABORTED = "association.aborted"
    #: We ended a connection: over a connection limit, past a read deadline, or a protocol
    #: violation (a PDU longer than allowed, a runaway command set). Rate-limited per address.
    CONNECTION_DROPPED = "connection.dropped"

    #: A STOW-RS request was refused before its body was read (no, a wrong or revoked
    #: token; a sender not allowed from the address; not DICOM). Rate-limited per address.
    STOW_REFUSED = "stow.refused"

    #: An instance was stored durably and recorded; success was answered.
    INSTANCE_STORED = "instance.stored"
    #: The same SOP Instance UID with the same bytes again: success, nothing new kept.
    INSTANCE_DUPLICATE = "instance.duplicate"
    #: The same SOP Instance UID with different bytes: kept as a new version.
    INSTANCE_VERSION = "instance.version"
    #: An instance was refused with a failure status; nothing of it was kept.
    INSTANCE_REFUSED = "instance.refused"
    #: A transfer ended before the instance was complete (abort, lost peer); nothing kept.
    INSTANCE_INCOMPLETE = "instance.incomplete"
    #: Reconcile found a complete stored file without its row and admitted it.
    INSTANCE_RECOVERED = "instance.recovered"
    #: Reconcile found a stored file it could not admit and moved it to quarantine.
    INSTANCE_QUARANTINED = "instance.quarantined"

    #: A settled or processed slide received new instances and is receiving again.
    SLIDE_REOPENED = "slide.reopened"
    #: The quiet time passed and the series opens as a usable pyramid.
    SLIDE_SETTLED = "slide.settled"
    #: The quiet time passed but the series cannot be processed; the reason is recorded.
    SLIDE_UNPROCESSABLE = "slide.unprocessable"

    #: A job was queued for a settled slide.
    JOB_CREATED = "job.created"
    #: A newer job replaces this one (new instances arrived for its slide).
    JOB_SUPERSEDED = "job.superseded"

    #: The listener started (after its reconcile) or stopped.
    LISTENER_STARTED = "listener.started"
    LISTENER_STOPPED = "listener.stopped"
    #: What the start-up reconcile found and did.
    LISTENER_RECONCILED = "listener.reconciled"
