"""Where each sample slide stands, read from the database (the one source of truth): received,
settled, job running, SEG written, delivered; and why, when it went wrong."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db import Delivery, Instance, Job, Result, Slide
from ..db.enums import DeliveryState, JobState, SlideState


@dataclass(frozen=True)
class SlideProgress:
    """One slide's state; ``stage`` is a short word that changes as it moves on."""

    series_uid: str
    instances: int = 0
    slide_id: int | None = None
    slide_state: str | None = None
    slide_reason: str | None = None
    job_id: int | None = None
    job_state: str | None = None
    job_attempts: int = 0
    job_error: str | None = None
    timings: dict[str, Any] = field(default_factory=dict)
    result_id: int | None = None
    seg_series_uid: str | None = None
    seg_instance_uids: tuple[str, ...] = ()
    tumour_area_mm2: float | None = None
    tissue_area_mm2: float | None = None
    model: dict[str, Any] | None = None
    delivery_state: str | None = None
    delivery_attempts: int = 0
    delivery_error: str | None = None

    @property
    def stage(self) -> str:
        if self.delivery_state == DeliveryState.DELIVERED:
            return "delivered"
        if self.delivery_state == DeliveryState.FAILED:
            return "delivery failed"
        if self.result_id is not None:
            return "SEG written, delivering"
        if self.job_state == JobState.FAILED:
            return "job failed"
        if self.job_state == JobState.RUNNING:
            return "job running"
        if self.job_state == JobState.QUEUED:
            return "settled, job queued" if self.job_attempts == 0 else "job queued (retry)"
        if self.slide_state == SlideState.UNPROCESSABLE:
            return "unprocessable"
        if self.slide_state == SlideState.SETTLED:
            return "settled"
        if self.instances:
            return f"received {self.instances} instance{'s' * (self.instances != 1)}"
        return "waiting"

    @property
    def finished(self) -> bool:
        """Nothing more will happen without a person: delivered, or failed for good."""
        return self.stage in ("delivered", "delivery failed", "job failed", "unprocessable")

    @property
    def why(self) -> str | None:
        """What is known of why it did not get through."""
        for reason in (self.delivery_error, self.job_error, self.slide_reason):
            if reason:
                return reason
        return None


def slide_progress(session: Session, series_uid: str) -> SlideProgress:
    """The slide of ``series_uid``, its newest job, that job's result and delivery."""
    instances = session.scalar(
        select(func.count()).select_from(Instance).where(Instance.series_instance_uid == series_uid)
    )
    slide = session.scalars(select(Slide).where(Slide.series_instance_uid == series_uid)).first()
    if slide is None:
        return SlideProgress(series_uid=series_uid, instances=instances or 0)
    job = session.scalars(
        select(Job).where(Job.slide_id == slide.id).order_by(Job.id.desc()).limit(1)
    ).first()
    values: dict[str, Any] = {
        "series_uid": series_uid,
        "instances": instances or 0,
        "slide_id": slide.id,
        "slide_state": slide.state,
        "slide_reason": slide.state_reason,
    }
    if job is not None:
        values.update(
            job_id=job.id,
            job_state=job.state,
            job_attempts=job.attempts,
            job_error=job.error,
            timings=dict(job.timings or {}),
        )
        if job.model is not None:
            values["model"] = {
                "name": job.model.name,
                "version": job.model.version,
                "mpp": float((job.model.card or {}).get("mpp") or 0) or None,
                "weights_sha256": job.model.weights_sha256,
            }
        result = session.scalars(select(Result).where(Result.job_id == job.id)).first()
        if result is not None:
            values.update(
                result_id=result.id,
                seg_series_uid=result.series_instance_uid,
                seg_instance_uids=tuple(i.sop_instance_uid for i in result.seg_instances),
                tumour_area_mm2=result.tumour_area_mm2,
                tissue_area_mm2=result.tissue_area_mm2,
            )
            delivery = session.scalars(
                select(Delivery).where(Delivery.result_id == result.id).order_by(Delivery.id)
            ).first()
            if delivery is not None:
                values.update(
                    delivery_state=delivery.state,
                    delivery_attempts=delivery.attempts,
                    delivery_error=delivery.last_error,
                )
    return SlideProgress(**values)
