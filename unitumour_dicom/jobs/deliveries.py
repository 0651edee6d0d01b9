"""Delivery claims: one sender per delivery at a time, and recovery when a sender dies.

The delivery rows (``unitumour_dicom.deliver``) carry their own retry schedule
(``next_attempt_at``). A sender claims a due row by moving it from ``pending`` to
``sending`` with a compare-and-set, and ``next_attempt_at`` becomes the claim's deadline; the
attempt then writes the outcome (delivered, pending with the next try, or failed). A row
still ``sending`` after its deadline lost its sender; the reconcile puts it back to pending.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from ..db import Delivery, DeliveryState, record_event
from .events import JobEvent

log = logging.getLogger(__name__)


def _due(now: datetime):  # type: ignore[no-untyped-def]
    return or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)


def claim_delivery(
    *, session: Session, delivery_id: int, now: datetime, lease_seconds: float, worker: str
) -> bool:
    """Take a due, pending delivery for one attempt; False when it is not due or not pending."""
    result = session.execute(
        update(Delivery)
        .where(Delivery.id == delivery_id, Delivery.state == DeliveryState.PENDING, _due(now))
        .values(state=DeliveryState.SENDING, next_attempt_at=now + timedelta(seconds=lease_seconds))
        .execution_options(synchronize_session=False)
    )
    claimed = result.rowcount == 1
    if claimed:
        log.info("delivery %s claimed by %s", delivery_id, worker)
    return claimed


def recover_deliveries(
    *, session: Session, now: datetime, worker: str
) -> tuple[list[int], list[int]]:
    """Put deliveries whose sender died back to pending; return (recovered, due) ids."""
    stuck = list(
        session.scalars(
            select(Delivery.id).where(
                Delivery.state == DeliveryState.SENDING, Delivery.next_attempt_at < now
            )
        )
    )
    recovered = []
    for delivery_id in stuck:
        result = session.execute(
            update(Delivery)
            .where(
                Delivery.id == delivery_id,
                Delivery.state == DeliveryState.SENDING,
                Delivery.next_attempt_at < now,
            )
            .values(state=DeliveryState.PENDING, next_attempt_at=now)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:
            recovered.append(delivery_id)
            record_event(
                session=session,
                event=JobEvent.DELIVERY_RECOVERED,
                actor=worker,
                delivery_id=delivery_id,
                message=(
                    f"delivery {delivery_id} was still sending past its deadline (its sender "
                    "stopped): pending again"
                ),
            )
    due = list(
        session.scalars(
            select(Delivery.id)
            .where(Delivery.state == DeliveryState.PENDING, _due(now))
            .order_by(Delivery.id)
        )
    )
    return recovered, due
