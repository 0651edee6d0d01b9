"""Catalogue of the audit event codes that jobs and their workers write.

Each code is ``<subject>.<what happened>``, the same shape as the listener's catalogue
(``unitumour_dicom.ingest.events``), so the audit pages filter them by subject.
"""

from __future__ import annotations

from enum import StrEnum


class JobEvent(StrEnum):
    """Audit event codes of the job life cycle."""

    #: A message for the job was sent to the segmentation queue (first time or again).
    JOB_DISPATCHED = "job.dispatched"
    #: A worker took the job's lease (attempt N of M).
    JOB_CLAIMED = "job.claimed"
    #: The pipeline started reading the slide.
    JOB_STARTED = "job.started"
    #: The SEG is stored and recorded with its provenance; deliveries are queued.
    JOB_SUCCEEDED = "job.succeeded"
    #: An attempt failed and attempts remain: the job is queued again after a delay.
    JOB_RETRIED = "job.retried"
    #: The last attempt failed (or the lease of the last attempt ran out): the job ended.
    JOB_FAILED = "job.failed"
    #: A worker stopped heartbeating; the reconcile took the job back.
    JOB_LEASE_EXPIRED = "job.lease_expired"
    #: A worker found its lease taken over (it had stalled) and dropped its work.
    JOB_LEASE_LOST = "job.lease_lost"
    #: A worker shutting down gave the job back to the queue without counting an attempt.
    JOB_RELEASED = "job.released"
    #: The job finished while it ran elsewhere (superseded); its work was not recorded.
    JOB_DISCARDED = "job.discarded"

    #: A sender stopped while sending: the reconcile put the delivery back to pending.
    DELIVERY_RECOVERED = "delivery.recovered"

    #: One pass of the reconcile changed something (its counts are in the details).
    WORKER_RECONCILED = "worker.reconciled"
    #: A worker process started or stopped.
    WORKER_STARTED = "worker.started"
    WORKER_STOPPED = "worker.stopped"
