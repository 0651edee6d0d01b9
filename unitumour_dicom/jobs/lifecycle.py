"""A worker process's start and stop, on record (``worker.started``, ``worker.stopped``): the
audit log shows which processes served which queue, and when, beside the jobs they ran."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..db import AuditEventName, record_event

if TYPE_CHECKING:
    from ..runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["record_worker_started", "record_worker_stopped"]


def record_worker_started(
    *, runtime: Runtime, worker: str, queue: str, pool: str, concurrency: int
) -> None:
    """Audit the start of ``worker`` on ``queue`` (committed at once)."""
    with runtime.session() as session:
        record_event(
            session=session,
            event=AuditEventName.WORKER_STARTED,
            actor=worker,
            message=f"worker {worker} started on the {queue} queue ({pool}, {concurrency})",
            details={"queue": queue, "pool": pool, "concurrency": concurrency},
        )


def record_worker_stopped(*, runtime: Runtime, worker: str) -> bool:
    """Audit the stop of ``worker``; False (and a logged error) when the database cannot
    take it: a stopping process must not fail for its last audit row."""
    try:
        with runtime.session() as session:
            record_event(
                session=session,
                event=AuditEventName.WORKER_STOPPED,
                actor=worker,
                message=f"worker {worker} stopped",
            )
    except Exception:
        log.exception("could not record the stop of worker %s", worker)
        return False
    return True
