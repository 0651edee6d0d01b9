"""The per-source watermark row (``pull_watermarks``): read at each poll, written after it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import Instance, InstanceState, PullSeries, PullWatermark


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
    """How many distinct instances of a series we received (any intake path), counting
    those that retention purged since: a purged slide is not fetched again."""
    return int(
        session.scalar(
            select(func.count(func.distinct(Instance.sop_instance_uid))).where(
                Instance.series_instance_uid == series_instance_uid,
                Instance.state.in_([InstanceState.STORED, InstanceState.PURGED]),
            )
        )
        or 0
    )


class SeriesState:
    RETRIEVED = "retrieved"
    RETRYING = "retrying"
    FAILED = "failed"


def series_row(session: Session, source: str, series_instance_uid: str) -> PullSeries | None:
    return session.scalars(
        select(PullSeries).where(
            PullSeries.source == source, PullSeries.series_instance_uid == series_instance_uid
        )
    ).one_or_none()


def record_attempt(
    session: Session,
    *,
    source: str,
    study_instance_uid: str,
    series_instance_uid: str,
    now: datetime,
    instances: int,
    error: str | None,
    max_attempts: int,
) -> PullSeries:
    """Count one retrieval of a series; None ``error``: it is retrieved."""
    row = series_row(session, source, series_instance_uid)
    if row is None:
        row = PullSeries(
            source=source,
            study_instance_uid=study_instance_uid,
            series_instance_uid=series_instance_uid,
            attempts=0,
            instances=0,
            first_attempt_at=now,
        )
        session.add(row)
    row.attempts = (row.attempts or 0) + 1
    row.instances = (row.instances or 0) + instances
    row.last_attempt_at = now
    if error is None:
        row.state = SeriesState.RETRIEVED
        row.retrieved_at = now
        row.last_error = None
    else:
        row.last_error = error[:2000]
        row.state = SeriesState.FAILED if row.attempts >= max_attempts else SeriesState.RETRYING
    return row


def failed_series(session: Session, source: str) -> int:
    return int(
        session.scalar(
            select(func.count())
            .select_from(PullSeries)
            .where(PullSeries.source == source, PullSeries.state == SeriesState.FAILED)
        )
        or 0
    )


def all_watermarks(session: Session) -> list[PullWatermark]:
    return list(session.scalars(select(PullWatermark).order_by(PullWatermark.source)))
