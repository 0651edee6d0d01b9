"""The reconcile: find the work that a crash or a lost message left behind, and say what to send.

The database is the one source of truth; the broker only carries ids. So each worker, on
start and every ``worker.reconcile_seconds``, compares the jobs table with what should be
happening: a running job whose lease ran out lost its worker and goes back to the queue
(or ends failed when that was its last attempt); a queued job that was never sent, or whose
message is in no queue any more, is sent again. Finished jobs are never touched, and a job
that has a result is never run again. Every change is a compare-and-set, so reconciles
running at once on several hosts cannot undo each other.

The functions here change rows and return the ids to send, already marked as sent (a
compare-and-set, so of several reconciles only one sends each); the caller commits, then
sends. A crash in between only means a later reconcile sends them again (after
``worker.redispatch_s``), and the lease makes a duplicate message harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from ..db import Job, JobState, Result, compare_and_set, record_event
from .dispatch_marks import claim_marks
from .events import JobEvent

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What one pass changed, and the ids the caller must send to the queues."""

    expired_requeued: list[int] = field(default_factory=list)
    expired_failed: list[int] = field(default_factory=list)
    exhausted_failed: list[int] = field(default_factory=list)
    repaired: list[int] = field(default_factory=list)
    settled_jobs: list[int] = field(default_factory=list)
    jobs_to_dispatch: list[int] = field(default_factory=list)
    recovered_deliveries: list[int] = field(default_factory=list)
    deliveries_to_dispatch: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return any(
            (
                self.expired_requeued,
                self.expired_failed,
                self.exhausted_failed,
                self.repaired,
                self.settled_jobs,
                self.recovered_deliveries,
            )
        )

    def counts(self) -> dict[str, int]:
        return {name: len(value) for name, value in vars(self).items()}


def repair_finished_with_result(*, session: Session, now: datetime, worker: str) -> list[int]:
    """Unfinished jobs that already have a result are marked succeeded, never run again.

    The pipeline records a result and its job's success in one transaction, so this finds
    only rows changed by hand or by an older version; it is cheap and closes the door.
    """
    has_result = exists().where(Result.job_id == Job.id)
    ids = list(
        session.scalars(
            select(Job.id).where(Job.state.in_((JobState.QUEUED, JobState.RUNNING)), has_result)
        )
    )
    repaired = []
    for job_id in ids:
        won = compare_and_set(
            session,
            Job,
            job_id,
            state=(JobState.QUEUED, JobState.RUNNING),
            values={
                "state": JobState.SUCCEEDED,
                "finished_at": now,
                "lease_owner": None,
                "lease_expires_at": None,
            },
        )
        if won:
            repaired.append(job_id)
            record_event(
                session=session,
                event=JobEvent.JOB_SUCCEEDED,
                actor=worker,
                job_id=job_id,
                message=f"job {job_id} has a recorded result: marked succeeded by the reconcile",
                details={"repaired": True},
            )
    return repaired


def expire_leases(
    *, session: Session, now: datetime, worker: str, max_attempts: int
) -> tuple[list[int], list[int]]:
    """Running jobs whose lease ran out: back to queued, or failed after their last attempt.

    Returns (requeued ids, failed ids).
    """
    rows = session.execute(
        select(Job.id, Job.lease_owner, Job.attempts, Job.lease_expires_at).where(
            Job.state == JobState.RUNNING, Job.lease_expires_at < now
        )
    ).all()
    requeued: list[int] = []
    failed: list[int] = []
    for row in rows:
        limit = max(max_attempts, 1)
        final = row.attempts >= limit
        reason = (
            f"lease of {row.lease_owner} expired at {row.lease_expires_at:%Y-%m-%d %H:%M:%S}Z "
            f"during attempt {row.attempts} of {limit} (the worker stopped heartbeating)"
        )
        values: dict[str, object] = {
            "lease_owner": None,
            "lease_expires_at": None,
            "dispatched_at": now,  # the winner of this update sends the message
        }
        if final:
            values.update(state=JobState.FAILED, finished_at=now, error=reason)
        else:
            values.update(state=JobState.QUEUED)
        won = compare_and_set(
            session,
            Job,
            row.id,
            state=JobState.RUNNING,
            where=[
                Job.lease_owner == row.lease_owner,
                Job.attempts == row.attempts,
                Job.lease_expires_at < now,
            ],
            values=values,
        )
        if not won:
            continue  # renewed or taken over meanwhile
        record_event(
            session=session,
            event=JobEvent.JOB_LEASE_EXPIRED,
            actor=worker,
            job_id=row.id,
            message=f"job {row.id}: {reason}",
            details={"owner": row.lease_owner, "attempt": row.attempts, "of": limit},
        )
        if final:
            failed.append(row.id)
            record_event(
                session=session,
                event=JobEvent.JOB_FAILED,
                actor=worker,
                job_id=row.id,
                message=f"job {row.id} failed: {reason}",
                details={"attempt": row.attempts, "of": limit, "error": reason},
            )
        else:
            requeued.append(row.id)
    if requeued or failed:
        log.warning("leases expired: %s requeued, %s failed", requeued, failed)
    return requeued, failed


def fail_exhausted(*, session: Session, now: datetime, worker: str, max_attempts: int) -> list[int]:
    """Queued jobs that have no attempt left (the limit was lowered) end failed."""
    ids = list(
        session.scalars(
            select(Job.id).where(Job.state == JobState.QUEUED, Job.attempts >= max_attempts)
        )
    )
    failed = []
    for job_id in ids:
        reason = f"no attempt left ({max_attempts} allowed)"
        won = compare_and_set(
            session,
            Job,
            job_id,
            state=JobState.QUEUED,
            where=[Job.attempts >= max_attempts],
            values={"state": JobState.FAILED, "finished_at": now, "error": reason},
        )
        if won:
            failed.append(job_id)
            record_event(
                session=session,
                event=JobEvent.JOB_FAILED,
                actor=worker,
                job_id=job_id,
                message=f"job {job_id} failed: {reason}",
                details={"error": reason},
            )
    return failed


def claim_dispatches(
    *,
    session: Session,
    now: datetime,
    redispatch_s: float | None = None,
    queue_depth: int | None = None,
    job_ids: Sequence[int] | None = None,
) -> list[int]:
    """Queued jobs whose message this caller must send; each is marked sent, once.

    A job qualifies when it was never sent, or (with ``redispatch_s``) when its message was
    sent that long ago and is taken to be lost. ``queue_depth`` is the number of messages
    waiting in the segmentation queue when the broker can tell (None when it cannot): a
    message is taken to be lost only when that queue is empty, so a deep queue is not
    mistaken for lost messages. ``job_ids`` limits the candidates (a creator's hook).

    Each candidate is a compare-and-set (see :mod:`.dispatch_marks`), so of several
    processes reconciling at once (or a hook and a reconcile) exactly one sends.
    """
    return claim_marks(
        session=session,
        model=Job,
        waiting_state=JobState.QUEUED,
        unsent=Job.dispatched_at.is_(None),
        now=now,
        redispatch_s=redispatch_s,
        queue_depth=queue_depth,
        ids=job_ids,
    )


def reconcile_jobs(
    *,
    session: Session,
    now: datetime,
    worker: str,
    max_attempts: int,
    redispatch_s: float,
    queue_depth: int | None,
) -> ReconcileReport:
    """One pass over the jobs table; the caller commits, then sends ``jobs_to_dispatch``."""
    report = ReconcileReport()
    report.repaired = repair_finished_with_result(session=session, now=now, worker=worker)
    report.expired_requeued, report.expired_failed = expire_leases(
        session=session, now=now, worker=worker, max_attempts=max_attempts
    )
    report.exhausted_failed = fail_exhausted(
        session=session, now=now, worker=worker, max_attempts=max_attempts
    )
    report.jobs_to_dispatch = sorted(
        set(report.expired_requeued)
        | set(
            claim_dispatches(
                session=session, now=now, redispatch_s=redispatch_s, queue_depth=queue_depth
            )
        )
    )
    return report
