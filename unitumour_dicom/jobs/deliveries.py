"""Delivery claims: one sender per delivery at a time, and recovery when a sender dies.

The delivery rows (``unitumour_dicom.deliver``) carry their own retry schedule
(``next_attempt_at``). A sender claims a due row by moving it from ``pending`` to
``sending`` with a compare-and-set, and ``next_attempt_at`` becomes the claim's deadline; the
attempt then writes the outcome (delivered, pending with the next try, or failed). A row
still ``sending`` after its deadline lost its sender; the reconcile puts it back to pending.

Messages: ``dispatched_at`` records when a message for the row's current attempt was sent
(for a delayed message, when it is due). A pending, due row needs a message only when none
was sent since its attempt fell due (``dispatched_at`` unset or before ``next_attempt_at``),
or when the one sent is taken to be lost (sent ``redispatch_s`` ago and the delivery queue
is empty). Claiming that is a compare-and-set, so reconciles on several hosts, and a
creator's hook racing them, send each message once, and a queue whose consumers are away
does not fill with copies of the same delivery.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from ..db import AuditEventName, Delivery, DeliveryState, compare_and_set, record_event
from .dispatch_marks import claim_marks

log = logging.getLogger(__name__)


def _due(now: datetime):
    return or_(Delivery.next_attempt_at.is_(None), Delivery.next_attempt_at <= now)


def claim_delivery(
    *, session: Session, delivery_id: int, now: datetime, lease_seconds: float, worker: str
) -> bool:
    """Take a due, pending delivery for one attempt; False when it is not due or not pending."""
    claimed = compare_and_set(
        session,
        Delivery,
        delivery_id,
        state=DeliveryState.PENDING,
        where=[_due(now)],
        values={
            "state": DeliveryState.SENDING,
            "next_attempt_at": now + timedelta(seconds=lease_seconds),
        },
    )
    if claimed:
        log.info("delivery %s claimed by %s", delivery_id, worker)
    return claimed


def claim_delivery_dispatches(
    *,
    session: Session,
    now: datetime,
    redispatch_s: float | None = None,
    queue_depth: int | None = None,
    delivery_ids: Sequence[int] | None = None,
) -> list[int]:
    """Pending, due deliveries whose message this caller must send; each marked sent, once.

    ``queue_depth`` is the number of messages waiting in the delivery queue when the broker
    can tell (None when it cannot): a sent message is taken to be lost only when that queue
    is empty. ``delivery_ids`` limits the candidates (a creator's hook).
    """
    return claim_marks(
        session=session,
        model=Delivery,
        waiting_state=DeliveryState.PENDING,
        # none sent since the current attempt fell due
        unsent=or_(
            Delivery.dispatched_at.is_(None),
            and_(
                Delivery.next_attempt_at.is_not(None),
                Delivery.dispatched_at < Delivery.next_attempt_at,
            ),
        ),
        now=now,
        redispatch_s=redispatch_s,
        queue_depth=queue_depth,
        ids=delivery_ids,
        also=[_due(now)],
    )


def mark_delivery_dispatched(*, session: Session, delivery_id: int, due_at: datetime) -> None:
    """Record a delayed message for the next attempt (due at ``due_at``) as sent."""
    compare_and_set(
        session,
        Delivery,
        delivery_id,
        state=DeliveryState.PENDING,
        values={"dispatched_at": due_at},
    )


def recover_deliveries(
    *,
    session: Session,
    now: datetime,
    worker: str,
    redispatch_s: float | None = None,
    queue_depth: int | None = None,
) -> tuple[list[int], list[int]]:
    """Put deliveries whose sender died back to pending; return (recovered, to send) ids,
    the second already marked sent (see :func:`claim_delivery_dispatches`)."""
    stuck = list(
        session.scalars(
            select(Delivery.id).where(
                Delivery.state == DeliveryState.SENDING, Delivery.next_attempt_at < now
            )
        )
    )
    recovered = []
    for delivery_id in stuck:
        won = compare_and_set(
            session,
            Delivery,
            delivery_id,
            state=DeliveryState.SENDING,
            where=[Delivery.next_attempt_at < now],
            values={"state": DeliveryState.PENDING, "next_attempt_at": now},
        )
        if won:
            recovered.append(delivery_id)
            record_event(
                session=session,
                event=AuditEventName.DELIVERY_RECOVERED,
                actor=worker,
                delivery_id=delivery_id,
                message=(
                    f"delivery {delivery_id} was still sending past its deadline (its sender "
                    "stopped): pending again"
                ),
            )
    to_send = claim_delivery_dispatches(
        session=session, now=now, redispatch_s=redispatch_s, queue_depth=queue_depth
    )
    return recovered, to_send
