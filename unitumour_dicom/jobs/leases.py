"""Job leases: the compare-and-set steps that let many workers share one jobs table safely.

A worker runs a job only while it holds the job's lease: ``lease_owner`` names the claim and
``lease_expires_at`` says until when it holds. Every step is one conditional UPDATE whose
WHERE clause carries the state the step expects (state, owner, attempt), so of two workers
racing for the same job exactly one sees its row count be 1. This holds on PostgreSQL
(READ COMMITTED re-checks the WHERE clause on the row it waited for) and on SQLite (writes
are serialised). Each function adds its audit row to the caller's session; the caller commits
at once, so the claim, the heartbeat or the outcome becomes visible to the other workers.

Clocks: leases are written with the claiming host's clock and read with the reconciling
host's; hosts must keep time (NTP), with a lease far longer than their skew.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, exists, or_, select
from sqlalchemy.orm import Session

from ..db import AuditEventName, Job, JobState, Result, compare_and_set, record_event
from .identity import lease_owner

log = logging.getLogger(__name__)

#: Longest error text kept on a job row (the full traceback goes to the worker's log).
MAX_ERROR_CHARS = 4000


@dataclass(frozen=True)
class Lease:
    """One claim of one job: proof, for the compare-and-set steps, that this worker runs it."""

    job_id: int
    owner: str
    attempt: int
    max_attempts: int
    expires_at: datetime

    @property
    def last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


def _claimable(now: datetime, max_attempts: int):
    """Queued, or running on a lease that ran out; attempts left; no result recorded."""
    return and_(
        or_(
            Job.state == JobState.QUEUED,
            and_(Job.state == JobState.RUNNING, Job.lease_expires_at < now),
        ),
        Job.attempts < max_attempts,
        ~exists().where(Result.job_id == Job.id),
    )


def claim_job(
    *,
    session: Session,
    job_id: int,
    worker: str,
    now: datetime,
    lease_seconds: float,
    max_attempts: int,
) -> Lease | None:
    """Take the job's lease for one attempt, or None when it is not ours to run.

    ``max_attempts`` is the configured limit (worker.max_attempts); it is written on the row
    so the row says which limit applied. A job that is finished, leased by a live worker,
    out of attempts or already has a result is never claimed: :func:`why_not_claimable`
    says which.
    """
    before = session.execute(
        select(Job.state, Job.lease_owner).where(Job.id == job_id)
    ).one_or_none()
    if before is None:
        return None
    owner = lease_owner(worker)
    expires = now + timedelta(seconds=lease_seconds)
    won = compare_and_set(
        session,
        Job,
        job_id,
        where=[_claimable(now, max_attempts)],
        values={
            "state": JobState.RUNNING,
            "lease_owner": owner,
            "lease_expires_at": expires,
            "heartbeat_at": now,
            "started_at": now,
            "finished_at": None,
            "attempts": Job.attempts + 1,
            "max_attempts": max_attempts,
        },
    )
    if not won:
        return None
    attempt = session.execute(select(Job.attempts).where(Job.id == job_id)).scalar_one()
    details: dict[str, object] = {"owner": owner, "attempt": attempt, "of": max_attempts}
    if before.state == JobState.RUNNING:
        details["took_over_from"] = before.lease_owner
    record_event(
        session=session,
        event=AuditEventName.JOB_CLAIMED,
        actor=worker,
        job_id=job_id,
        message=f"job {job_id} claimed by {worker}, attempt {attempt} of {max_attempts}",
        details=details,
    )
    return Lease(
        job_id=job_id, owner=owner, attempt=attempt, max_attempts=max_attempts, expires_at=expires
    )


def why_not_claimable(*, session: Session, job_id: int, now: datetime, max_attempts: int) -> str:
    """A sentence that says why :func:`claim_job` refused (for the log of a skipped message)."""
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        return f"job {job_id} does not exist"
    has_result = session.scalar(select(exists().where(Result.job_id == job_id)))
    if has_result:
        return f"job {job_id} already has its result"
    if JobState(job.state).finished:
        return f"job {job_id} is {job.state}"
    if job.attempts >= max_attempts:
        return f"job {job_id} has used {job.attempts} of {max_attempts} attempts"
    if job.state == JobState.RUNNING and job.lease_expires_at and job.lease_expires_at >= now:
        return f"job {job_id} is leased by {job.lease_owner} until {job.lease_expires_at:%H:%M:%S}"
    return f"job {job_id} is {job.state}"


def _set_if_held(session: Session, lease: Lease, values: dict[str, object]) -> bool:
    """Compare-and-set on the job while ``lease`` still holds it (running, same owner and
    attempt)."""
    return compare_and_set(
        session,
        Job,
        lease.job_id,
        state=JobState.RUNNING,
        where=[Job.lease_owner == lease.owner, Job.attempts == lease.attempt],
        values=values,
    )


def renew_lease(
    *, session: Session, lease: Lease, now: datetime, lease_seconds: float
) -> Lease | None:
    """Heartbeat: push the lease's end forward; None when the lease is no longer ours.

    A lease that ran out but that nobody took over is still ours to renew.
    """
    expires = now + timedelta(seconds=lease_seconds)
    if not _set_if_held(session, lease, {"lease_expires_at": expires, "heartbeat_at": now}):
        return None
    return Lease(
        job_id=lease.job_id,
        owner=lease.owner,
        attempt=lease.attempt,
        max_attempts=lease.max_attempts,
        expires_at=expires,
    )


def complete_job(
    *, session: Session, lease: Lease, now: datetime, worker: str, **provenance: object
) -> bool:
    """Mark the job succeeded, with its provenance columns; False when the lease was lost.

    The caller records the result in the same session and commits once, so the result
    and the job's success are saved together or not at all.
    """
    done = _set_if_held(
        session,
        lease,
        {
            "state": JobState.SUCCEEDED,
            "finished_at": now,
            "lease_owner": None,
            "lease_expires_at": None,
            "error": None,
            **provenance,
        },
    )
    if not done:
        return False
    record_event(
        session=session,
        event=AuditEventName.JOB_SUCCEEDED,
        actor=worker,
        job_id=lease.job_id,
        message=f"job {lease.job_id} succeeded on attempt {lease.attempt}",
        details={"attempt": lease.attempt},
    )
    return True


def fail_attempt(
    *,
    session: Session,
    lease: Lease,
    now: datetime,
    worker: str,
    error: str,
    retry: bool = True,
    retry_at: datetime | None = None,
    **provenance: object,
) -> JobState | None:
    """Record a failed attempt: queued again while attempts remain, else failed.

    Returns the job's new state, or None when the lease was no longer ours (the job's state
    then belongs to whoever holds it). ``retry=False`` ends the job at once (for errors that
    another attempt cannot cure). ``retry_at`` is when the caller will send the job's message
    again; written as its dispatch time, it keeps the reconcile from sending it sooner.
    """
    error = error[:MAX_ERROR_CHARS]
    final = lease.last_attempt or not retry
    state = JobState.FAILED if final else JobState.QUEUED
    values: dict[str, object] = {
        "state": state,
        "lease_owner": None,
        "lease_expires_at": None,
        "error": error,
        **provenance,
    }
    if final:
        values["finished_at"] = now
    elif retry_at is not None:
        values["dispatched_at"] = retry_at
    if not _set_if_held(session, lease, values):
        return None
    if final:
        record_event(
            session=session,
            event=AuditEventName.JOB_FAILED,
            actor=worker,
            job_id=lease.job_id,
            message=(
                f"job {lease.job_id} failed on attempt {lease.attempt} of "
                f"{lease.max_attempts}: {error}"
            ),
            details={"attempt": lease.attempt, "of": lease.max_attempts, "error": error},
        )
    else:
        record_event(
            session=session,
            event=AuditEventName.JOB_RETRIED,
            actor=worker,
            job_id=lease.job_id,
            message=(
                f"job {lease.job_id} attempt {lease.attempt} of {lease.max_attempts} failed, "
                f"will run again: {error}"
            ),
            details={"attempt": lease.attempt, "of": lease.max_attempts, "error": error},
        )
    return state


def release_job(*, session: Session, lease: Lease, now: datetime, worker: str, reason: str) -> bool:
    """Give a running job back to the queue without counting the attempt (worker shutdown).

    The job is marked as sent now: the caller sends its message at once (should it fail to,
    the reconcile sends it after ``worker.redispatch_s``). False when the lease was no
    longer ours.
    """
    released = _set_if_held(
        session,
        lease,
        {
            "state": JobState.QUEUED,
            "lease_owner": None,
            "lease_expires_at": None,
            "attempts": Job.attempts - 1,
            "dispatched_at": now,
        },
    )
    if not released:
        return False
    record_event(
        session=session,
        event=AuditEventName.JOB_RELEASED,
        actor=worker,
        job_id=lease.job_id,
        message=f"job {lease.job_id} given back to the queue: {reason}",
        details={"attempt": lease.attempt, "reason": reason},
    )
    log.info("job %s released: %s", lease.job_id, reason)
    return True
