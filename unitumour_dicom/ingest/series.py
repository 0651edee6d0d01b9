"""Series tracking: one slide per series, a quiet timer per slide, one job per settled slide.

Every stored instance of a slide pushes its ``settle_at`` to now + quiet time. When that time
passes, :func:`settle_due_slides` (called periodically by the listener, and by the worker's
reconcile) checks the pyramid and moves the slide to settled with exactly one queued job, or to
unprocessable with the reason. Both writers change a slide only with a conditional UPDATE on
its state and ``settle_at``, so two processes settling at once, or an instance arriving while a
slide settles, can never produce two jobs or lose an arrival.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import (
    Instance,
    InstanceState,
    Job,
    JobState,
    Slide,
    SlideState,
    compare_and_set,
    record_event,
)
from ..store import FileStore
from .events import IngestEvent
from .pyramid import PyramidCheck, check_pyramid
from .validate import InstanceSummary

log = logging.getLogger(__name__)

ACTOR = "listener"


@dataclass(frozen=True)
class Arrival:
    """What an arrival did to its slide."""

    slide_id: int
    created: bool
    reopened: bool
    previous_state: str | None


def record_arrival(
    *,
    session: Session,
    summary: InstanceSummary,
    source_ae: str | None,
    quiet_seconds: float,
    now: datetime,
    association_id: int | None = None,
) -> Arrival:
    """Create the slide of a WSI instance's series, or reset its quiet timer (and reopen it).

    The UPDATE comes first so that it takes the row's write lock (and SQLite's database lock)
    before the state is read (it returns the state it found, in the same statement): a
    concurrent settle either finished before (and we reopen the slide) or waits for our
    commit (and then finds ``settle_at`` moved on).
    """
    settle_at = now + timedelta(seconds=quiet_seconds)
    series_uid = summary.series_instance_uid
    found = session.execute(
        update(Slide)
        .where(Slide.series_instance_uid == series_uid)
        .values(last_received_at=now, settle_at=settle_at, quiet_seconds=quiet_seconds)
        .returning(Slide.id, Slide.state, Slide.frame_of_reference_uid)
        .execution_options(synchronize_session=False)
    ).first()
    if found is None:
        slide = Slide(
            study_instance_uid=summary.study_instance_uid,
            series_instance_uid=series_uid,
            frame_of_reference_uid=summary.frame_of_reference_uid,
            patient_id=summary.patient_id,
            patient_name=summary.patient_name,
            accession_number=summary.accession_number,
            study_date=summary.study_date,
            container_identifier=summary.container_identifier,
            source_ae=source_ae,
            state=SlideState.RECEIVING,
            quiet_seconds=quiet_seconds,
            first_received_at=now,
            last_received_at=now,
            settle_at=settle_at,
        )
        session.add(slide)
        session.flush()  # IntegrityError here if another association created it meanwhile
        return Arrival(slide.id, True, False, None)
    slide_id, previous, frame_of_reference = found
    if previous == SlideState.RECEIVING:
        if frame_of_reference is None and summary.frame_of_reference_uid:
            session.execute(
                update(Slide)
                .where(Slide.id == slide_id)
                .values(frame_of_reference_uid=summary.frame_of_reference_uid)
                .execution_options(synchronize_session=False)
            )
        return Arrival(slide_id, False, False, previous)
    session.execute(
        update(Slide)
        .where(Slide.id == slide_id)
        .values(
            state=SlideState.RECEIVING,
            state_reason=(
                f"new instance {summary.sop_instance_uid} after the slide was {previous}"
            ),
        )
        .execution_options(synchronize_session=False)
    )
    record_event(
        session=session,
        event=IngestEvent.SLIDE_REOPENED,
        message=f"slide {series_uid} was {previous}; new instances arrived, receiving again",
        actor=ACTOR,
        association_id=association_id,
        slide_id=slide_id,
        details={"previous_state": previous, "sop_instance_uid": summary.sop_instance_uid},
    )
    return Arrival(slide_id, False, True, previous)


def touch_receiving_slide(
    *, session: Session, series_instance_uid: str, quiet_seconds: float, now: datetime
) -> int | None:
    """Reset the quiet timer of a slide still receiving (a duplicate arrived); its id or None."""
    session.execute(
        update(Slide)
        .where(
            Slide.series_instance_uid == series_instance_uid,
            Slide.state == SlideState.RECEIVING,
        )
        .values(last_received_at=now, settle_at=now + timedelta(seconds=quiet_seconds))
        .execution_options(synchronize_session=False)
    )
    return session.execute(
        select(Slide.id).where(Slide.series_instance_uid == series_instance_uid)
    ).scalar_one_or_none()


def current_instances(session: Session, slide_id: int) -> list[Instance]:
    """The newest stored version of each SOP instance of a slide, in UID order."""
    rows = session.scalars(
        select(Instance)
        .where(Instance.slide_id == slide_id, Instance.state == InstanceState.STORED)
        .order_by(Instance.sop_instance_uid, Instance.version)
    ).all()
    newest: dict[str, Instance] = {}
    for row in rows:
        newest[row.sop_instance_uid] = row
    return list(newest.values())


def job_inputs(instances: list[Instance]) -> dict[str, object]:
    """The exact inputs a job is created for: each instance's UID, version, digest and path."""
    return {
        "instances": [
            {
                "sop_instance_uid": i.sop_instance_uid,
                "version": i.version,
                "sha256": i.sha256,
                "path": i.path,
                "image_type": i.image_type,
            }
            for i in instances
        ]
    }


def _check(store: FileStore, instances: list[Instance]) -> PyramidCheck:
    missing = [i.path for i in instances if not store.exists(i.path)]
    if missing:
        return PyramidCheck(
            False, f"{len(missing)} stored file(s) are missing: {', '.join(missing[:5])}"
        )
    return check_pyramid([store.abspath(i.path) for i in instances])


def settle_due_slides(
    *,
    session: Session,
    store: FileStore,
    now: datetime,
    limit: int = 20,
    max_attempts: int | None = None,
) -> list[Job]:
    """Settle every receiving slide whose quiet time has passed; return the jobs created.

    The caller commits (and then dispatches the returned job ids). Safe to run from several
    processes at once: a slide is settled by whichever conditional UPDATE wins.
    """
    due = session.execute(
        select(Slide.id, Slide.series_instance_uid)
        .where(Slide.state == SlideState.RECEIVING, Slide.settle_at <= now)
        .order_by(Slide.settle_at)
        .limit(limit)
    ).all()
    jobs: list[Job] = []
    for slide_id, series_uid in due:
        instances = current_instances(session, slide_id)
        check = _check(store, instances)
        state = SlideState.SETTLED if check.usable else SlideState.UNPROCESSABLE
        won = compare_and_set(
            session,
            Slide,
            slide_id,
            state=SlideState.RECEIVING,
            where=[Slide.settle_at <= now],
            values={"state": state, "state_reason": check.reason[:4000], "settled_at": now},
        )
        if not won:
            continue  # another process settled it, or an instance arrived meanwhile
        if not check.usable:
            log.warning("slide %s is unprocessable: %s", series_uid, check.reason)
            record_event(
                session=session,
                event=IngestEvent.SLIDE_UNPROCESSABLE,
                message=f"slide {series_uid} cannot be processed: {check.reason}",
                actor=ACTOR,
                slide_id=slide_id,
                details=check.details,
            )
            continue
        record_event(
            session=session,
            event=IngestEvent.SLIDE_SETTLED,
            message=f"slide {series_uid} settled: {check.reason}",
            actor=ACTOR,
            slide_id=slide_id,
            details=check.details,
        )
        jobs.append(
            create_job(
                session=session,
                slide_id=slide_id,
                series_uid=series_uid,
                instances=instances,
                now=now,
                max_attempts=max_attempts,
            )
        )
    session.flush()
    return jobs


def create_job(
    *,
    session: Session,
    slide_id: int,
    series_uid: str,
    instances: list[Instance],
    now: datetime,
    max_attempts: int | None,
) -> Job:
    previous = session.scalars(
        select(Job).where(Job.slide_id == slide_id).order_by(Job.id.desc()).limit(1)
    ).first()
    reason = f"slide settled with {len(instances)} instance(s)"
    if previous is not None:
        reason = (
            f"slide settled again with {len(instances)} instance(s) after new arrivals; "
            f"supersedes job {previous.id} ({previous.state})"
        )
    job = Job(
        slide_id=slide_id,
        state=JobState.QUEUED,
        reason=reason,
        created_at=now,
        supersedes_job_id=previous.id if previous is not None else None,
        inputs=job_inputs(instances),
    )
    if max_attempts is not None:
        job.max_attempts = max_attempts
    session.add(job)
    session.flush()
    if previous is not None:
        if previous.state == JobState.QUEUED:
            previous.state = JobState.SUPERSEDED
            previous.finished_at = now
        previous.reason = f"{previous.reason or ''}; superseded by job {job.id}".lstrip("; ")
        record_event(
            session=session,
            event=IngestEvent.JOB_SUPERSEDED,
            message=f"job {previous.id} ({previous.state}) superseded by job {job.id}",
            actor=ACTOR,
            slide_id=slide_id,
            job_id=previous.id,
            details={"superseded_by": job.id, "state": str(previous.state)},
        )
    record_event(
        session=session,
        event=IngestEvent.JOB_CREATED,
        message=f"job {job.id} queued for slide {series_uid}: {reason}",
        actor=ACTOR,
        slide_id=slide_id,
        job_id=job.id,
    )
    log.info("job %s queued for slide %s (%s)", job.id, series_uid, reason)
    return job
