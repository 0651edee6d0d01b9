"""Compare-and-set on one row: the single place where a claim's semantics are spelled.

Every state change that several processes may attempt at once (claiming a job's lease,
settling a slide, taking a delivery, marking a message as sent, expiring a lease) is one
conditional UPDATE of one row, by its id, whose WHERE clause carries what the caller saw (the
state, the owner, the attempt, a timestamp). Of two processes racing, exactly one sees a row
count of 1: on PostgreSQL because READ COMMITTED re-checks the WHERE clause on the row it
waited for; on SQLite because writes are serialised. The winner then writes its audit row in
the same session and commits; the loser does nothing.

The update bypasses the session's identity map (``synchronize_session=False``): a caller that
holds the ORM object reads it again (``session.refresh`` or ``populate_existing``) if it needs
the new values.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

__all__ = ["compare_and_set"]


def compare_and_set(
    session: Session,
    model: Any,
    row_id: int,
    *,
    values: Mapping[str, Any],
    state: str | Collection[str] | None = None,
    where: Sequence[ColumnElement[bool]] = (),
) -> bool:
    """Set ``values`` on row ``row_id`` of ``model`` only if it still is as the caller saw it.

    ``state``: the state (or one of the states) the row must be in; ``where``: any further
    conditions (an owner, an attempt number, a deadline passed). Returns True when this
    caller's update won (exactly one row changed), False when the row is missing or has
    changed meanwhile. Flushes nothing and commits nothing: the caller commits with its
    audit row.
    """
    conditions: list[ColumnElement[bool]] = [model.id == row_id]
    if state is not None:
        if isinstance(state, str):
            conditions.append(model.state == state)
        else:
            conditions.append(model.state.in_(list(state)))
    conditions.extend(where)
    result = session.execute(
        update(model)
        .where(*conditions)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount == 1)  # type: ignore[attr-defined]
