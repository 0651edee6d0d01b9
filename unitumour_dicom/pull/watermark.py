"""The per-source watermark row (``pull_watermarks``): read at each poll, written after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import Instance, InstanceState, PullWatermark


@dataclass(frozen=True)
class PollRecord:
    """What one poll changes in its source's row."""

    started_at: datetime
    complete: bool  # query and every retrieval succeeded: the watermark moves to started_at
    series_retrieved: int
    instances_received: int
    error: str | None


def read_watermark(session: Session, source: str) -> datetime | None:
    row = session.get(PullWatermark, source)
    return row.watermark if row is not None else None


def record_poll(session: Session, source: str, record: PollRecord) -> PullWatermark:
    row = session.get(PullWatermark, source)
    if row is None:
        row = PullWatermark(source=source, series_retrieved=0, instances_received=0)
        session.add(row)
    row.last_poll_at = record.started_at
    row.series_retrieved = (row.series_retrieved or 0) + record.series_retrieved
    row.instances_received = (row.instances_received or 0) + record.instances_received
    if record.complete:
        row.watermark = record.started_at
        row.last_success_at = record.started_at
        row.last_error = None
    else:
        row.last_error = (record.error or "incomplete")[:2000]
    return row


def stored_instances(session: Session, series_instance_uid: str) -> int:
    """How many distinct instances of a series the store holds (any intake path)."""
    return int(
        session.scalar(
            select(func.count(func.distinct(Instance.sop_instance_uid))).where(
                Instance.series_instance_uid == series_instance_uid,
                Instance.state == InstanceState.STORED,
            )
        )
        or 0
    )


def all_watermarks(session: Session) -> list[PullWatermark]:
    return list(session.scalars(select(PullWatermark).order_by(PullWatermark.source)))
