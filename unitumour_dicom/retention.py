"""Retention: remove the received files of slides that are done with, keep everything we made.

A department cannot keep every whole-slide image twice (in its PACS and in our store) forever,
but it must keep the evidence of what the AI did. A purge therefore removes only the received
instance files of a slide, and only when nothing can still need them:

* the slide is settled, its newest instance arrived before the cut-off;
* its newest job succeeded, and no job of it is queued or running;
* every delivery of every result of the slide is delivered or failed for good.

Everything else stays: the slide and instance rows (UIDs, sha256 digests, sizes, paths), the
jobs with their provenance, the results and their SEG files, deliveries and the audit log.
Instance and slide rows are marked ``purged``; each purged slide gets an audit event.

Order of work, per slide, for crash safety: the rows are marked purged and the audit event
committed first, the files removed after. A crash in between leaves files whose rows say
purged; the next run removes them (a leftover, never a row that points at a missing file).

Races: the slide row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL; on SQLite the first
write takes the database's write lock) and the conditions are checked again under the lock,
so a job or an instance that arrives meanwhile either blocks until the purge commits or makes
the slide ineligible. The compare-and-set on state and last_received_at refuses a slide that
changed between the scan and the purge.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .db import (
    AuditEventName,
    Delivery,
    DeliveryState,
    Instance,
    InstanceState,
    Job,
    JobState,
    Result,
    Slide,
    SlideState,
    compare_and_set,
    record_event,
)
from .db.types import utcnow
from .errors import StoreError, UniTumourError
from .runtime import Runtime

log = logging.getLogger(__name__)

#: Delivery states after which a result's files are no longer being sent anywhere.
FINISHED_DELIVERY_STATES = frozenset({DeliveryState.DELIVERED, DeliveryState.FAILED})
#: Job states that mean the slide's files are, or are about to be, read.
ACTIVE_JOB_STATES = frozenset({JobState.QUEUED, JobState.RUNNING})


class RetentionError(UniTumourError):
    """A purge was asked for without an age, or with one that makes no sense."""


@dataclass(frozen=True)
class SlidePurge:
    """A slide whose received files were (or, in a dry run, would be) removed."""

    slide_id: int
    series_instance_uid: str
    last_received_at: datetime
    instances: int
    size_bytes: int


@dataclass(frozen=True)
class SlideKept:
    """A slide older than the cut-off that was kept, and why."""

    slide_id: int
    series_instance_uid: str
    reason: str


@dataclass
class PurgeReport:
    """What one run did: the cut-off, each slide purged or kept, and the files removed."""

    cutoff: datetime
    dry_run: bool
    purged: list[SlidePurge] = field(default_factory=list)
    kept: list[SlideKept] = field(default_factory=list)
    files_removed: int = 0
    bytes_freed: int = 0
    leftovers_removed: int = 0
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cutoff"] = self.cutoff.isoformat()
        for item in data["purged"]:
            item["last_received_at"] = item["last_received_at"].isoformat()
        return data


def cutoff_for(older_than_days: float, now: datetime) -> datetime:
    """The instant before which a slide's newest instance must have arrived."""
    if older_than_days < 0:
        raise RetentionError(f"older-than must be 0 days or more, not {older_than_days}")
    if now.tzinfo is None:
        raise RetentionError("now must be timezone-aware")
    return now - timedelta(days=older_than_days)


def _why_kept(session: Session, slide: Slide, cutoff: datetime) -> str | None:
    """The reason a slide must keep its files, or None when it may be purged."""
    if slide.state != SlideState.SETTLED:
        reasons = {
            SlideState.RECEIVING: "still receiving (quiet timer running)",
            SlideState.UNPROCESSABLE: "unprocessable: no result was made from it",
        }
        return reasons.get(SlideState(slide.state), f"slide state is {slide.state}")
    if slide.last_received_at >= cutoff:
        return "an instance arrived after the cut-off"
    return _work_in_hand(session, slide.id)


def _work_in_hand(session: Session, slide_id: int) -> str | None:
    """Why the slide's files may still be needed: a job to run, a result not yet sent."""
    jobs = session.scalars(select(Job).where(Job.slide_id == slide_id).order_by(Job.id)).all()
    active = [j for j in jobs if j.state in ACTIVE_JOB_STATES]
    if active:
        return f"job {active[-1].id} is {active[-1].state}"
    if not jobs:
        return "no job has run on it"
    last = jobs[-1]
    if last.state != JobState.SUCCEEDED:
        return f"its last job {last.id} is {last.state}, not succeeded"
    if session.scalar(select(Result.id).where(Result.job_id == last.id)) is None:
        return f"its last job {last.id} succeeded but recorded no result"
    open_delivery = session.scalars(
        select(Delivery)
        .join(Result, Delivery.result_id == Result.id)
        .join(Job, Result.job_id == Job.id)
        .where(
            Job.slide_id == slide_id,
            Delivery.state.not_in([s.value for s in FINISHED_DELIVERY_STATES]),
        )
        .order_by(Delivery.id)
        .limit(1)
    ).first()
    if open_delivery is not None:
        d = open_delivery
        return f"delivery {d.id} to {d.destination} is {d.state}"
    return None


def _stored_instances(session: Session, slide_id: int) -> Sequence[Instance]:
    return session.scalars(
        select(Instance)
        .where(Instance.slide_id == slide_id, Instance.state == InstanceState.STORED)
        .order_by(Instance.id)
    ).all()


def _candidates(session: Session, cutoff: datetime) -> Sequence[Slide]:
    return session.scalars(
        select(Slide)
        .where(Slide.last_received_at < cutoff, Slide.state != SlideState.PURGED)
        .order_by(Slide.last_received_at, Slide.id)
    ).all()


def _purge_rows(
    runtime: Runtime, slide_id: int, cutoff: datetime, *, now: datetime, actor: str, days: float
) -> tuple[SlidePurge | None, SlideKept | None, list[str]]:
    """Mark one slide and its stored instances purged, audited, in one transaction.

    Returns the purge (with the relative paths to remove) or the reason it was kept.
    """
    with runtime.session() as session:
        slide = session.scalars(
            select(Slide).where(Slide.id == slide_id).with_for_update()
        ).one_or_none()
        if slide is None:
            return None, None, []
        seen_last = slide.last_received_at
        series_uid = slide.series_instance_uid
        reason = _why_kept(session, slide, cutoff)
        if reason is not None:
            return None, SlideKept(slide_id, series_uid, reason), []
        # Compare-and-set on what was just judged. On SQLite this write takes the database's
        # write lock, so the second look below reads the newest committed state and nothing
        # changes it until we commit; on PostgreSQL the row lock above does that.
        claimed = compare_and_set(
            session,
            Slide,
            slide_id,
            state=SlideState.SETTLED,
            where=[Slide.last_received_at == seen_last],
            values={"state": SlideState.PURGED},
        )
        if not claimed:
            session.rollback()
            return None, SlideKept(slide_id, series_uid, "changed meanwhile"), []
        reason = _work_in_hand(session, slide_id)
        if reason is not None:
            session.rollback()
            return None, SlideKept(slide_id, series_uid, reason), []
        instances = _stored_instances(session, slide_id)
        size = sum(i.size_bytes for i in instances)
        slide.state = SlideState.PURGED
        slide.state_reason = (
            f"received files purged by retention at {now.isoformat()} "
            f"(older than {days:g} days); results and provenance kept"
        )
        if instances:
            session.execute(
                update(Instance)
                .where(Instance.id.in_([i.id for i in instances]))
                .values(state=InstanceState.PURGED)
                .execution_options(synchronize_session=False)
            )
        record_event(
            session=session,
            event=AuditEventName.SLIDE_PURGED,
            message=(
                f"received files of series {slide.series_instance_uid} purged: "
                f"{len(instances)} instances, {size} bytes; results and provenance kept"
            ),
            actor=actor,
            slide_id=slide_id,
            details={
                "series_instance_uid": slide.series_instance_uid,
                "instances": [
                    {"id": i.id, "sop_instance_uid": i.sop_instance_uid, "version": i.version}
                    for i in instances
                ],
                "size_bytes": size,
                "older_than_days": days,
                "cutoff": cutoff.isoformat(),
                "last_received_at": seen_last.isoformat(),
            },
        )
        purge = SlidePurge(slide_id, slide.series_instance_uid, seen_last, len(instances), size)
        return purge, None, [i.path for i in instances]


def _remove_files(runtime: Runtime, relpaths: Sequence[str], report: PurgeReport) -> int:
    """Remove stored files; return how many were there. Failures are reported, not raised."""
    removed = 0
    for relpath in relpaths:
        try:
            path = runtime.store.abspath(relpath)
            if not path.is_file():
                continue
            size = path.stat().st_size
            runtime.store.remove(relpath)
        except (OSError, StoreError) as exc:
            report.errors.append(f"{relpath}: {exc}")
            log.error("retention: could not remove %s: %s", relpath, exc)
            continue
        removed += 1
        report.files_removed += 1
        report.bytes_freed += size
    return removed


def _remove_leftovers(runtime: Runtime, report: PurgeReport) -> None:
    """Files whose rows already say purged: a run that stopped between commit and removal."""
    with runtime.session() as session:
        paths = session.scalars(
            select(Instance.path).where(Instance.state == InstanceState.PURGED)
        ).all()
    report.leftovers_removed = _remove_files(runtime, paths, report)
    if report.leftovers_removed:
        log.warning("retention: removed %d leftover purged files", report.leftovers_removed)


def purge_slides(
    runtime: Runtime,
    *,
    older_than_days: float,
    now: datetime | None = None,
    dry_run: bool = False,
    actor: str = "retention",
) -> PurgeReport:
    """Purge the received files of every slide that is done with and older than the age.

    Parameters
    ----------
    runtime
        The database and the store to work on.
    older_than_days
        A slide qualifies when its newest instance arrived at least this long before ``now``.
    now
        The clock (timezone-aware); the current time when None.
    dry_run
        Report what would be purged and why slides are kept, change nothing.
    actor
        Recorded on each audit event (the operator or the timer that ran the purge).
    """
    now = now or utcnow()
    cutoff = cutoff_for(older_than_days, now)
    report = PurgeReport(cutoff=cutoff, dry_run=dry_run)
    if not dry_run:
        _remove_leftovers(runtime, report)
    with runtime.session() as session:
        candidates = [(s.id, s.series_instance_uid) for s in _candidates(session, cutoff)]
    for slide_id, series_uid in candidates:
        if dry_run:
            with runtime.session() as session:
                slide = session.get(Slide, slide_id)
                if slide is None:
                    continue
                reason = _why_kept(session, slide, cutoff)
                if reason is not None:
                    report.kept.append(SlideKept(slide_id, series_uid, reason))
                    continue
                instances = _stored_instances(session, slide_id)
                report.purged.append(
                    SlidePurge(
                        slide_id,
                        series_uid,
                        slide.last_received_at,
                        len(instances),
                        sum(i.size_bytes for i in instances),
                    )
                )
            continue
        purge, kept, relpaths = _purge_rows(
            runtime, slide_id, cutoff, now=now, actor=actor, days=older_than_days
        )
        if kept is not None:
            report.kept.append(kept)
        if purge is not None:
            report.purged.append(purge)
            _remove_files(runtime, relpaths, report)
            log.info(
                "retention: purged slide %d (%s): %d instances, %d bytes",
                slide_id,
                series_uid,
                purge.instances,
                purge.size_bytes,
            )
    return report
