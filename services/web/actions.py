"""What an admin may do from the web app: re-run a job, re-send a delivery. Both are audited
in the same transaction as the change, and handed to the worker through a hook (the web app
never imports the broker); a lost hand-off is picked up by the worker's reconcile."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from unitumour_dicom.config.sections import DeliverySettings
from unitumour_dicom.db import Delivery, DeliveryState, Job, JobState, SlideState, record_event

from .cases import NotFoundError

log = logging.getLogger(__name__)

Dispatch = Callable[[int], None]
_ACTIVE = (JobState.QUEUED, JobState.RUNNING)


class ConflictError(RuntimeError):
    """The action does not fit the current state (e.g. a job of the case is still running)."""


def rerun_job(*, session: Session, job_id: int, username: str, slide_id: int | None = None) -> Job:
    """A new queued job for the same slide that supersedes ``job_id`` (which must belong to
    ``slide_id`` when given).

    Refused while any job of the slide is queued or running: the new one would race it.
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
    previous_state = old.state
    new = Job(
        slide_id=old.slide_id,
        model_id=None,  # the worker runs the model deployed now, and records it
        state=JobState.QUEUED,
        reason=f"re-run by {username}",
        supersedes_job_id=old.id,
        max_attempts=old.max_attempts,
    )
    session.add(new)
    session.flush()
    old.state = JobState.SUPERSEDED
    record_event(
        session=session,
        event="job.rerun",
        message=f"job {new.id} queued by {username} to re-run job {old.id} ({previous_state})",
        actor=username,
        slide_id=old.slide_id,
        job_id=new.id,
        details={"supersedes_job_id": old.id, "previous_state": previous_state},
    )
    return new


def resend_delivery(
    *,
    session: Session,
    delivery_id: int,
    username: str,
    settings: DeliverySettings,
    slide_id: int | None = None,
) -> Delivery:
    """Make a delivery pending again, due now, with a fresh maximum age."""
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or (slide_id is not None and delivery.result.job.slide_id != slide_id):
        raise NotFoundError(
            f"no delivery {delivery_id}" + (f" in case {slide_id}" if slide_id else "")
        )
    if delivery.state == DeliveryState.SENDING:
        raise ConflictError(f"delivery {delivery_id} is being sent right now")
    now = datetime.now(UTC)
    previous_state = delivery.state
    delivery.state = DeliveryState.PENDING
    delivery.next_attempt_at = now
    delivery.give_up_at = now + timedelta(seconds=settings.max_age_s)
    record_event(
        session=session,
        event="delivery.resend",
        message=(
            f"delivery {delivery.id} to {delivery.destination} set to re-send by {username} "
            f"(was {previous_state})"
        ),
        actor=username,
        slide_id=delivery.result.job.slide_id,
        job_id=delivery.result.job_id,
        delivery_id=delivery.id,
        details={"previous_state": previous_state, "destination": delivery.destination},
    )
    return delivery


def dispatch(hook: Dispatch | None, ident: int, what: str) -> bool:
    """Call a hand-off hook after the commit; a failure is logged, never lost (reconcile)."""
    if hook is None:
        return False
    try:
        hook(ident)
    except Exception:
        log.exception("could not hand %s %s to the worker; reconcile will pick it up", what, ident)
        return False
    return True
