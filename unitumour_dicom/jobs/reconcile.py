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

:func:`reconcile_pass` is one whole pass (slides that fell quiet, jobs, deliveries), and
:class:`ReconcileLoop` the thread that every worker process runs it in; the worker only
wires its broker in as the :class:`Sender`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from ..db import AuditEventName, Job, JobState, Result, compare_and_set, record_event
from ..db.types import utcnow
from .dispatch_marks import claim_marks

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

#: How often the reconcile loop looks for jobs that nobody has sent yet (cheap query); the
#: full reconcile runs every ``worker.reconcile_seconds``.
NEW_JOB_POLL_S = 2.0


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
                event=AuditEventName.JOB_SUCCEEDED,
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
            event=AuditEventName.JOB_LEASE_EXPIRED,
            actor=worker,
            job_id=row.id,
            message=f"job {row.id}: {reason}",
            details={"owner": row.lease_owner, "attempt": row.attempts, "of": limit},
        )
        if final:
            failed.append(row.id)
            record_event(
                session=session,
                event=AuditEventName.JOB_FAILED,
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
                event=AuditEventName.JOB_FAILED,
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


def claim_job_messages(
    *,
    session: Session,
    now: datetime,
    job_ids: Sequence[int],
    actor: str,
    reason: str | None = None,
    queue: str = "segmentation",
) -> list[int]:
    """The jobs among ``job_ids`` whose message nobody has sent yet, marked as sent (a
    creator's hook: the listener's settle, a re-run). With a ``reason`` each is audited as
    ``job.dispatched``. The caller commits, then sends them: marking and sending are split by
    the commit, so a hook and a reconcile racing for the same new job send it once.
    """
    won = claim_dispatches(session=session, now=now, job_ids=job_ids)
    if reason:
        for job_id in won:
            record_event(
                session=session,
                event=AuditEventName.JOB_DISPATCHED,
                actor=actor,
                job_id=job_id,
                message=f"job {job_id} sent to the {queue} queue: {reason}",
            )
    return won


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


# -- the whole pass, and the loop that runs it ------------------------------------------------
class Sender(Protocol):
    """Where the reconcile puts the ids it claimed: the worker's broker (Celery) in
    production, a list in the tests."""

    def send_jobs(self, job_ids: Sequence[int], *, delay_s: float = 0.0) -> None: ...

    def send_deliveries(self, delivery_ids: Sequence[int], *, delay_s: float = 0.0) -> None: ...


def _no_depth() -> int | None:
    return None


def settle_due(*, session: Session, store: Any, now: datetime, max_attempts: int) -> list[int]:
    """Settle slides whose quiet time passed (the listener does too; both are safe): the ids
    of the jobs created."""
    try:
        from ..ingest.series import settle_due_slides
    except ImportError:  # pragma: no cover (ingest not installed in this build)
        return []
    jobs = settle_due_slides(session=session, store=store, now=now, max_attempts=max_attempts)
    return [job.id for job in jobs]


def reconcile_pass(
    *,
    runtime: Runtime,
    worker: str,
    now: datetime | None = None,
    jobs_queue_depth: int | None = None,
    deliveries_queue_depth: int | None = None,
) -> ReconcileReport:
    """One full reconcile, committed: settle slides that fell quiet, take back jobs whose
    lease ran out, claim the sending of jobs never sent or whose message was lost, put back
    deliveries whose sender died and claim the ones that fell due. Audited as
    ``worker.reconciled`` when it changed anything. The caller sends
    ``jobs_to_dispatch`` and ``deliveries_to_dispatch`` (already marked as sent).

    The queue depths are the messages waiting in the segmentation and delivery queues when
    the broker can tell (None when it cannot); see :func:`claim_dispatches`.
    """
    from .deliveries import recover_deliveries

    settings = runtime.settings
    now = now or utcnow()
    with runtime.session() as session:
        settled = settle_due(
            session=session,
            store=runtime.store,
            now=now,
            max_attempts=settings.worker.max_attempts,
        )
        report = reconcile_jobs(
            session=session,
            now=now,
            worker=worker,
            max_attempts=settings.worker.max_attempts,
            redispatch_s=settings.worker.redispatch_s,
            queue_depth=jobs_queue_depth,
        )
        report.settled_jobs = settled
        report.recovered_deliveries, report.deliveries_to_dispatch = recover_deliveries(
            session=session,
            now=now,
            worker=worker,
            redispatch_s=settings.worker.redispatch_s,
            queue_depth=deliveries_queue_depth,
        )
        if report.changed:
            record_event(
                session=session,
                event=AuditEventName.WORKER_RECONCILED,
                actor=worker,
                message=f"reconcile: {report.counts()}",
                details=report.counts(),
            )
    return report


def claim_unsent(*, runtime: Runtime, now: datetime | None = None) -> list[int]:
    """Jobs nobody has sent yet (their creator had no hook, or crashed after its commit),
    marked as sent and committed: the caller sends them."""
    with runtime.session() as session:
        return claim_dispatches(session=session, now=now or utcnow())


class ReconcileLoop:
    """Runs the reconcile in a thread of a worker process (every worker runs one).

    Every ``interval_s`` (``worker.reconcile_seconds``) a full :func:`reconcile_pass`; in
    between, every ``new_job_poll_s``, the cheap look for jobs nobody has sent. All changes
    are compare-and-sets, so passes on several hosts at once agree. ``sender`` takes the ids
    to send; ``*_queue_depth`` read the broker's queues before a pass (None: cannot tell).
    """

    def __init__(
        self,
        *,
        runtime: Runtime,
        worker: str,
        sender: Sender,
        interval_s: float | None = None,
        new_job_poll_s: float = NEW_JOB_POLL_S,
        jobs_queue_depth: Callable[[], int | None] = _no_depth,
        deliveries_queue_depth: Callable[[], int | None] = _no_depth,
    ) -> None:
        self.runtime = runtime
        self.worker = worker
        self.sender = sender
        self.interval_s = interval_s or runtime.settings.worker.reconcile_seconds
        self.new_job_poll_s = min(new_job_poll_s, self.interval_s)
        self.jobs_queue_depth = jobs_queue_depth
        self.deliveries_queue_depth = deliveries_queue_depth
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reconcile", daemon=True)
        self.passes = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _loop(self) -> None:
        next_full = 0.0
        clock = 0.0
        while not self._stop.is_set():
            try:
                if clock >= next_full:
                    self.run_once()
                    next_full = clock + self.interval_s
                else:
                    self.send_unsent()
            except Exception:
                log.exception("reconcile failed; trying again")
            if self._stop.wait(self.new_job_poll_s):
                break
            clock += self.new_job_poll_s

    def send_unsent(self) -> list[int]:
        """Send the jobs nobody has sent yet; return their ids."""
        ids = claim_unsent(runtime=self.runtime)
        self.sender.send_jobs(ids)
        return ids

    def run_once(self) -> dict[str, int]:
        """One full pass, then send what it claimed; return its counts."""
        report = reconcile_pass(
            runtime=self.runtime,
            worker=self.worker,
            jobs_queue_depth=self.jobs_queue_depth(),
            deliveries_queue_depth=self.deliveries_queue_depth(),
        )
        to_send = report.jobs_to_dispatch  # includes the jobs the settle created
        self.sender.send_jobs(to_send)
        self.sender.send_deliveries(report.deliveries_to_dispatch)
        self.passes += 1
        if report.changed or to_send:
            log.info("reconcile: %s", report.counts())
        return report.counts()
