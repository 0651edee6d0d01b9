"""Appending to the audit log. The caller's session commits it with the work it describes."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from .enums import AuditEventName
from .models import AuditEvent

log = logging.getLogger(__name__)


def record_event(
    *,
    session: Session,
    event: AuditEventName,
    message: str,
    actor: str | None = None,
    association_id: int | None = None,
    slide_id: int | None = None,
    job_id: int | None = None,
    delivery_id: int | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Add one audit row; the event code is a member of :class:`AuditEventName`, the one
    catalogue (a test holds every caller to it)."""
    row = AuditEvent(
        event=event,
        message=message,
        actor=actor,
        association_id=association_id,
        slide_id=slide_id,
        job_id=job_id,
        delivery_id=delivery_id,
        details=details,
    )
    session.add(row)
    log.info("audit %s: %s", event, message)
    return row
