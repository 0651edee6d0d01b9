"""Trying a delivery: one attempt sends every instance of the result, is recorded as a
DeliveryAttempt, and leaves the delivery delivered, pending with its next try scheduled
(exponential backoff with jitter), or failed once it is older than the maximum age or the
destination refused it for good. Failed deliveries stay visible until a person retries them.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime, timedelta

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ..config.sections import DeliverySettings, TLSSettings
from ..db import (
    AuditEventName,
    Delivery,
    DeliveryAttempt,
    DeliveryState,
    compare_and_set,
    record_event,
)
from ..errors import ConflictError, DeliveryError, IntegrityError, NotFoundError, StoreError
from ..store import FileStore
from .routing import instances_for, kinds_for
from .scu import Destination, SendReport, send_instances

log = logging.getLogger(__name__)


def backoff_delay_s(attempts: int, settings: DeliverySettings, rng: random.Random) -> float:
    """Seconds before the next try after ``attempts`` failed ones: initial x 2^(n-1), capped,
    then spread by +/- ``jitter`` so that many deliveries to a destination that comes back
    do not all knock at once."""
    base = min(settings.max_delay_s, settings.initial_delay_s * 2.0 ** max(attempts - 1, 0))
    return base * (1.0 + settings.jitter * rng.uniform(-1.0, 1.0))


def due_deliveries(*, session: Session, now: datetime, limit: int | None = None) -> list[Delivery]:
    """Pending deliveries whose next try is due, oldest due first."""
    query = (
        select(Delivery)
        .where(Delivery.state == DeliveryState.PENDING)
        .where(or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now))
        .order_by(Delivery.next_attempt_at, Delivery.id)
    )
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def destination_of(delivery: Delivery, settings: DeliverySettings) -> Destination:
    """The address recorded on the row, with the TLS settings of the destination of that name
    (a destination removed from the settings is still tried at its recorded address)."""
    configured = {d.name: d for d in settings.destinations}.get(delivery.destination)
    if configured is None:
        log.warning(
            "delivery %s: destination %r is no longer configured; using its recorded address",
            delivery.id,
            delivery.destination,
        )
    return Destination(
        name=delivery.destination,
        ae_title=delivery.ae_title,
        host=delivery.host,
        port=delivery.port,
        tls=configured.tls if configured else TLSSettings(),
    )


def attempt_delivery(
    *,
    session: Session,
    delivery: Delivery,
    store: FileStore,
    settings: DeliverySettings,
    now: datetime,
    rng: random.Random | None = None,
) -> DeliveryAttempt | None:
    """One try of ``delivery``; returns the attempt recorded (None when the delivery is
    already delivered or failed). Flushes, never commits: the caller commits the outcome."""
    if delivery.state in (DeliveryState.DELIVERED, DeliveryState.FAILED):
        log.info("delivery %s is %s: nothing to try", delivery.id, delivery.state)
        return None
    rng = rng or random.Random()
    started = time.monotonic()
    attempt = DeliveryAttempt(delivery=delivery, started_at=now)
    session.add(attempt)
    delivery.attempts = (delivery.attempts or 0) + 1
    if delivery.give_up_at is None:
        delivery.give_up_at = delivery.created_at + timedelta(seconds=settings.max_age_s)

    report = _send(delivery, store, settings)
    attempt.finished_at = now + timedelta(seconds=time.monotonic() - started)
    attempt.ok = report.ok
    attempt.status = report.status
    attempt.error = report.error or report.note  # delivered: the classes refused, if any
    delivery.last_status = report.status
    delivery.last_error = report.error or report.note
    where = f"{delivery.destination} ({delivery.ae_title}@{delivery.host}:{delivery.port})"
    details = {
        "attempt": delivery.attempts,
        "status": report.status,
        "statuses": {k: f"0x{v:04X}" for k, v in report.statuses.items()},
        "transfer_syntaxes": report.transfer_syntaxes,
        "seconds": round(report.seconds, 3),
        "refused_classes": report.refused_classes,
        "skipped": report.skipped,
    }
    record_event(
        session=session,
        event=AuditEventName.DELIVERY_ATTEMPT,
        message=(
            f"delivery {delivery.id} of result {delivery.result_id} to {where}, try "
            f"{delivery.attempts}: " + ("sent" if report.ok else f"failed: {report.error}")
        ),
        job_id=delivery.result.job_id if delivery.result else None,
        delivery_id=delivery.id,
        details={**details, "error": report.error},
    )
    if report.ok:
        delivery.state = DeliveryState.DELIVERED
        delivery.delivered_at = attempt.finished_at
        delivery.next_attempt_at = None
        record_event(
            session=session,
            event=AuditEventName.DELIVERY_DELIVERED,
            message=f"delivery {delivery.id}: result {delivery.result_id} is at {where}",
            job_id=delivery.result.job_id if delivery.result else None,
            delivery_id=delivery.id,
            details=details,
        )
    elif report.permanent or now >= delivery.give_up_at:
        delivery.state = DeliveryState.FAILED
        delivery.next_attempt_at = None
        why = "refused for good" if report.permanent else "older than the maximum age"
        record_event(
            session=session,
            event=AuditEventName.DELIVERY_FAILED,
            message=(
                f"delivery {delivery.id} to {where} failed after {delivery.attempts} tries "
                f"({why}): {report.error}"
            ),
            job_id=delivery.result.job_id if delivery.result else None,
            delivery_id=delivery.id,
            details={**details, "error": report.error, "permanent": report.permanent},
        )
        log.error("delivery %s failed (%s): %s", delivery.id, why, report.error)
    else:
        delay = backoff_delay_s(delivery.attempts, settings, rng)
        delivery.state = DeliveryState.PENDING
        delivery.next_attempt_at = min(now + timedelta(seconds=delay), delivery.give_up_at)
        log.warning(
            "delivery %s try %d failed (%s); next try at %s",
            delivery.id,
            delivery.attempts,
            report.error,
            delivery.next_attempt_at.isoformat(),
        )
    session.flush()
    return attempt


def _send(delivery: Delivery, store: FileStore, settings: DeliverySettings) -> SendReport:
    """Check every instance against its recorded digest, then send them all."""
    instances = instances_for(delivery.result, kinds_for(delivery.destination, settings))
    if not instances:
        return SendReport().fail("the result has no instances of the kinds", permanent=True)
    paths = []
    for inst in instances:
        try:
            store.verify(inst.path, inst.sha256)
        except IntegrityError as exc:
            return SendReport().fail(str(exc), permanent=True)
        except (OSError, StoreError) as exc:
            return SendReport().fail(f"{inst.path}: cannot be read ({exc})", permanent=True)
        paths.append(store.abspath(inst.path))
    try:
        return send_instances(
            destination=destination_of(delivery, settings),
            calling_ae_title=settings.calling_ae_title,
            paths=paths,
            timeout_s=settings.timeout_s,
        )
    except DeliveryError as exc:
        return SendReport().fail(str(exc), permanent=True)


def resend_delivery(
    *,
    session: Session,
    delivery_id: int,
    settings: DeliverySettings,
    now: datetime,
    actor: str,
    force: bool = False,
    slide_id: int | None = None,
) -> Delivery:
    """Make a delivery pending again, due now, with a fresh maximum age: a person asked for
    it (the web app's re-send, ``unitumour deliveries retry``). Audited as
    ``delivery.retry_requested`` in the caller's transaction; the caller commits, then hands
    the id to the sender (or leaves it to the reconcile).

    Raises NotFoundError for an unknown id (or one not of case ``slide_id`` when given), and
    ConflictError when a sender holds it right now, or when it was delivered and ``force``
    does not say to send it again.
    """
    delivery = session.get(Delivery, delivery_id)
    if delivery is None or (slide_id is not None and delivery.result.job.slide_id != slide_id):
        raise NotFoundError(
            f"no delivery {delivery_id}" + (f" in case {slide_id}" if slide_id else "")
        )
    previous = DeliveryState(delivery.state)
    if previous == DeliveryState.SENDING:
        raise ConflictError(f"delivery {delivery_id} is being sent right now")
    if previous == DeliveryState.DELIVERED and not force:
        raise ConflictError(
            f"delivery {delivery_id} was delivered at {delivery.delivered_at}; use --force to "
            "send it again"
        )
    won = compare_and_set(
        session,
        Delivery,
        delivery_id,
        state=previous,
        values={
            "state": DeliveryState.PENDING,
            "next_attempt_at": now,
            "give_up_at": now + timedelta(seconds=settings.max_age_s),
        },
    )
    if not won:
        raise ConflictError(f"delivery {delivery_id} changed meanwhile; try again")
    session.refresh(delivery)
    record_event(
        session=session,
        event=AuditEventName.DELIVERY_RETRY_REQUESTED,
        message=(
            f"delivery {delivery.id} to {delivery.destination} set to re-send by {actor} "
            f"(was {previous})"
        ),
        actor=actor,
        slide_id=delivery.result.job.slide_id,
        job_id=delivery.result.job_id,
        delivery_id=delivery.id,
        details={
            "previous_state": str(previous),
            "destination": delivery.destination,
            "force": force,
        },
    )
    session.flush()
    return delivery
