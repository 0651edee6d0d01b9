"""deliver_one: one delivery, from its claim to its recorded outcome.

What :func:`unitumour_dicom.pipeline.process_slide` is for jobs, this is for deliveries: the
one path that the delivery worker, ``unitumour deliveries retry --send-now`` and the tests
use (DESIGN.md rule 6).

1. claim the delivery (pending and due -> sending, a compare-and-set whose deadline is the
   claim's lease), or do nothing: not due, delivered, failed, or another sender has it;
2. one try (:func:`attempt_delivery`): every instance of the result, over one association;
   the attempt, its outcome and its audit rows are committed together;
3. when the try failed and the next is due soon, mark its message as sent now, to be
   delivered then: the caller (which owns a queue) sends it with that delay. A later one is
   left to the reconcile, so a queue never holds messages for hours.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from ..config import Settings
from ..db import Delivery, DeliveryState
from ..db.types import utcnow
from ..jobs.deliveries import claim_delivery, mark_delivery_dispatched
from ..runtime import Runtime
from .attempts import attempt_delivery

log = logging.getLogger(__name__)

__all__ = ["DeliveryOutcome", "deliver_one", "delivery_lease_s"]


@dataclass(frozen=True)
class DeliveryOutcome:
    """What one call of :func:`deliver_one` did with its delivery."""

    delivery_id: int
    ran: bool  # False: not due, finished, or another sender's; nothing changed
    state: str | None  # the delivery's state afterwards (None when it did not run)
    message: str
    #: A retry due within the caller's horizon: its message is marked as sent; the caller
    #: puts it on the queue with this delay (seconds).
    send_again_in_s: float | None = None


def delivery_lease_s(settings: Settings) -> float:
    """How long a delivery may stay 'sending' before the reconcile assumes its sender died:
    four times the network timeout of one association, and a minute."""
    return settings.delivery.timeout_s * 4 + 60.0


def deliver_one(
    delivery_id: int,
    *,
    runtime: Runtime,
    worker: str,
    send_again_within_s: float | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> DeliveryOutcome:
    """Try ``delivery_id`` once if it is ours to try; record what happened; never raise for
    the destination's failure.

    ``send_again_within_s``: the caller can send a delayed message (a worker with a queue);
    a retry due within that many seconds is marked as sent and returned as
    ``send_again_in_s``. None (``unitumour deliveries retry --send-now``) leaves every retry to
    the reconcile.
    """
    settings = runtime.settings
    with runtime.session() as session:
        claimed = claim_delivery(
            session=session,
            delivery_id=delivery_id,
            now=clock(),
            lease_seconds=delivery_lease_s(settings),
            worker=worker,
        )
    if not claimed:
        return DeliveryOutcome(
            delivery_id=delivery_id,
            ran=False,
            state=None,
            message=f"delivery {delivery_id} not due or taken by another sender",
        )
    send_in: float | None = None
    with runtime.session() as session:
        delivery = session.get(Delivery, delivery_id)
        assert delivery is not None  # claimed just now; deliveries are never deleted
        # No flush before the attempt's own: on SQLite a flush would hold the database's
        # write lock for as long as the association with the destination lasts.
        with session.no_autoflush:
            attempt_delivery(
                session=session,
                delivery=delivery,
                store=runtime.store,
                settings=settings.delivery,
                now=clock(),
            )
        state, next_at = delivery.state, delivery.next_attempt_at
        if send_again_within_s is not None and state == DeliveryState.PENDING and next_at:
            wait = max((next_at - clock()).total_seconds(), 0.0)
            if wait <= send_again_within_s:
                mark_delivery_dispatched(session=session, delivery_id=delivery_id, due_at=next_at)
                send_in = wait
    return DeliveryOutcome(
        delivery_id=delivery_id,
        ran=True,
        state=str(state),
        message=f"delivery {delivery_id}: {state}",
        send_again_in_s=send_in,
    )
