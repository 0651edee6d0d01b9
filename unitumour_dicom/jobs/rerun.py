"""rerun_job: a person asks for a job to run again (the web app's re-run, ``unitumour jobs
rerun``). One function and one audit code (``job.rerun``), whoever asks.

A new queued job for the same slide supersedes the old one, which must have finished: a new
one beside a queued or running job would race it. The model is not copied: the worker runs
the model deployed at the time and records it. The caller commits, then hands the new id to
the queue (or leaves it to the reconcile, which sends jobs nobody has sent).
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db import AuditEventName, Job, JobState, SlideState, compare_and_set, record_event
from ..errors import ConflictError, NotFoundError

log = logging.getLogger(__name__)

__all__ = ["rerun_job"]

_ACTIVE = (JobState.QUEUED, JobState.RUNNING)


def rerun_job(*, session: Session, job_id: int, actor: str, slide_id: int | None = None) -> Job:
    """Queue a new job that supersedes ``job_id`` (which must belong to ``slide_id`` when
    given); return the new job (flushed, so it has its id).

    Raises NotFoundError for an unknown job (or one of another case), ConflictError while a
    job of the slide is queued or running, when the slide's received files were purged, or
    when the old job changed meanwhile (another person re-ran it at the same moment).
    """
    old = session.get(Job, job_id)
    if old is None or (slide_id is not None and old.slide_id != slide_id):
        raise NotFoundError(f"no job {job_id}" + (f" in case {slide_id}" if slide_id else ""))
    active = session.scalar(
        select(Job.id).where(Job.slide_id == old.slide_id, Job.state.in_(_ACTIVE)).limit(1)
    )
    if active is not None:
        raise ConflictError(f"job {active} of this case is still queued or running")
    if old.slide.state == SlideState.PURGED:
        raise ConflictError(
            "the slide's received files were purged by retention; it must be sent again"
        )
    previous_state = JobState(old.state)
    if not compare_and_set(
        session, Job, old.id, state=previous_state, values={"state": JobState.SUPERSEDED}
    ):
        raise ConflictError(f"job {job_id} changed meanwhile; try again")
    session.refresh(old)
    new = Job(
        slide_id=old.slide_id,
        model_id=None,  # the worker runs the model deployed now, and records it
        state=JobState.QUEUED,
        reason=f"re-run by {actor}",
        supersedes_job_id=old.id,
        max_attempts=old.max_attempts,
    )
    session.add(new)
    session.flush()
    record_event(
        session=session,
        event=AuditEventName.JOB_RERUN,
        message=f"job {new.id} queued by {actor} to re-run job {old.id} ({previous_state})",
        actor=actor,
        slide_id=old.slide_id,
        job_id=new.id,
        details={"supersedes_job_id": old.id, "previous_state": str(previous_state)},
    )
    log.info("job %s queued by %s to re-run job %s", new.id, actor, old.id)
    return new
