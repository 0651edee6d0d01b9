"""Start-up reconcile: make the store and the database agree again after a crash.

Run by the listener while it holds the spool lock and before it accepts anything:

1. spool leftovers are transfers that never finished: deleted (never acknowledged);
2. associations still "open" ended with the crash: closed as aborted;
3. files in ``instances/`` without a row were validated before they were moved there, so a
   crash came between the move and the commit: each is checked again and admitted (the sender
   had no success for it and will resend: a duplicate), or quarantined with the reason;
4. settled slides without a job get their job.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import exists, select, update

from ..db import Association, AssociationState, Instance, Job, Slide, SlideState, record_event
from ..errors import InvalidInstanceError, UniTumourError
from ..runtime import Runtime
from ..store import sha256_file
from .admit import Admitter, ReceivedFile
from .events import IngestEvent
from .header import read_instance_header
from .series import create_job, current_instances
from .spool import SpoolDirectory
from .validate import InstanceLimits, validate_instance

log = logging.getLogger(__name__)

ACTOR = "listener"
_INSTANCE_PATH = re.compile(
    r"^instances/(?P<study>[0-9.]+)/(?P<series>[0-9.]+)/(?P<sop>[0-9.]+)\.v(?P<version>[1-9][0-9]*)\.dcm$"
)


@dataclass
class ReconcileReport:
    """What the reconcile found and did."""

    spool_removed: int = 0
    associations_closed: int = 0
    recovered: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)
    jobs_created: list[int] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"{self.spool_removed} partial spool file(s) removed, "
            f"{self.associations_closed} open association(s) closed, "
            f"{len(self.recovered)} stored file(s) admitted, "
            f"{len(self.quarantined)} quarantined, "
            f"{len(self.jobs_created)} job(s) created for settled slides"
        )


def reconcile(
    *,
    runtime: Runtime,
    spool: SpoolDirectory,
    admitter: Admitter,
    allowed_sop_classes: Collection[str],
    limits: InstanceLimits,
    now: datetime,
) -> ReconcileReport:
    """Run the four steps above; the caller holds the spool lock."""
    report = ReconcileReport()
    for path in spool.leftovers():
        path.unlink(missing_ok=True)
        report.spool_removed += 1
    with runtime.session() as session:
        result = session.execute(
            update(Association)
            .where(Association.state == AssociationState.OPEN)
            .values(state=AssociationState.ABORTED, ended_at=now)
            .returning(Association.id)
        )
        closed = [row[0] for row in result]
        for association_id in closed:
            record_event(
                session=session,
                event=IngestEvent.ASSOCIATION_ABORTED,
                message="association was open when the listener stopped; closed at start-up",
                actor=ACTOR,
                association_id=association_id,
            )
        report.associations_closed = len(closed)
    _adopt_orphans(runtime, admitter, allowed_sop_classes, limits, report)
    _queue_settled_without_jobs(runtime, now, report)
    if report.spool_removed or report.associations_closed or report.recovered or report.quarantined:
        log.warning("reconcile: %s", report.summary())
    else:
        log.info("reconcile: %s", report.summary())
    return report


def _adopt_orphans(
    runtime: Runtime,
    admitter: Admitter,
    allowed_sop_classes: Collection[str],
    limits: InstanceLimits,
    report: ReconcileReport,
) -> None:
    store = runtime.store
    with runtime.session() as session:
        known = set(session.scalars(select(Instance.path)))
    for relpath in store.iter_instance_files():
        if relpath in known:
            continue
        path = store.abspath(relpath)
        try:
            match = _INSTANCE_PATH.match(relpath)
            if match is None:
                raise InvalidInstanceError(f"{relpath} is not a path the listener writes")
            header = read_instance_header(
                path, scratch_dir=store.spool_dir, max_inflated_bytes=limits.max_instance_bytes
            )
            sop_class = str(header.dataset.get("SOPClassUID", ""))
            summary = validate_instance(
                header,
                command_sop_class_uid=sop_class,
                command_sop_instance_uid=match["sop"],
                allowed_sop_classes=allowed_sop_classes,
                limits=limits,
            )
            if (summary.study_instance_uid, summary.series_instance_uid) != (
                match["study"],
                match["series"],
            ):
                raise InvalidInstanceError(f"{relpath} lies under other UIDs than it holds")
            digest = sha256_file(path)
            with runtime.session() as session:
                same = session.scalar(
                    select(Instance.version).where(
                        Instance.sop_instance_uid == summary.sop_instance_uid,
                        Instance.sha256 == digest,
                    )
                )
            if same is not None:
                raise InvalidInstanceError(f"same bytes as the recorded v{same}")
            received = ReceivedFile(path, digest, path.stat().st_size)
            admitter.adopt(relpath, int(match["version"]), summary, received)
            report.recovered.append(relpath)
        except (UniTumourError, OSError) as exc:
            target = store.quarantine(path, "orphan")
            report.quarantined.append(target)
            log.warning("quarantined %s as %s: %s", relpath, target, exc)
            with runtime.session() as session:
                record_event(
                    session=session,
                    event=IngestEvent.INSTANCE_QUARANTINED,
                    message=(
                        f"{relpath} had no row and cannot be admitted ({exc}); kept as {target}"
                    ),
                    actor=ACTOR,
                    details={"path": relpath, "quarantine": target, "reason": str(exc)},
                )


def _queue_settled_without_jobs(runtime: Runtime, now: datetime, report: ReconcileReport) -> None:
    with runtime.session() as session:
        slides = session.execute(
            select(Slide.id, Slide.series_instance_uid).where(
                Slide.state == SlideState.SETTLED, ~exists().where(Job.slide_id == Slide.id)
            )
        ).all()
        for slide_id, series_uid in slides:
            job = create_job(
                session=session,
                slide_id=slide_id,
                series_uid=series_uid,
                instances=current_instances(session, slide_id),
                now=now,
                max_attempts=runtime.settings.worker.max_attempts,
            )
            report.jobs_created.append(job.id)
