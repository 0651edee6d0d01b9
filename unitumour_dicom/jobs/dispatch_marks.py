"""The dispatch mark that jobs and deliveries share: one queue message per unit of work.

A row's ``dispatched_at`` says when a message for it was sent. Claiming the right to send is
a compare-and-set on the value the caller saw, so of several processes reconciling at once
(or a creator's hook and a reconcile) exactly one sends each message; one sent twice anyway
(a crash between send and record) finds its row claimed and is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, or_, select
from sqlalchemy.orm import Session

from ..db.cas import compare_and_set


def claim_marks(
    *,
    session: Session,
    model: Any,
    waiting_state: str,
    unsent: ColumnElement[bool],
    now: datetime,
    redispatch_s: float | None,
    queue_depth: int | None,
    ids: Sequence[int] | None,
    also: Sequence[ColumnElement[bool]] = (),
) -> list[int]:
    """Rows of ``model`` in ``waiting_state`` whose message this caller must send, marked.

    A row qualifies when ``unsent`` holds for it, or (with ``redispatch_s``) when its message
    was sent that long ago and is taken to be lost: only when its queue is empty
    (``queue_depth`` 0, or None when the broker cannot tell), so that a deep queue is not
    mistaken for lost messages. ``ids`` limits the candidates; ``also`` adds conditions.
    """
    condition = unsent
    if redispatch_s is not None and not queue_depth:
        condition = or_(unsent, model.dispatched_at < now - timedelta(seconds=redispatch_s))
    query = select(model.id, model.dispatched_at).where(
        model.state == waiting_state, condition, *also
    )
    if ids is not None:
        query = query.where(model.id.in_([int(i) for i in ids]))
    won: list[int] = []
    for row_id, seen in session.execute(query.order_by(model.id)).all():
        same = model.dispatched_at.is_(None) if seen is None else model.dispatched_at == seen
        if compare_and_set(
            session, model, row_id, state=waiting_state, where=[same], values={"dispatched_at": now}
        ):
            won.append(row_id)
    return won
