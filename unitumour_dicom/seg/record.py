"""Recording a written SEG pyramid: the result row and one row per instance, with digests.

The pipeline calls this after ``write_seg_pyramid`` and commits it before any delivery is
planned, so everything that leaves the building is on record first (DESIGN.md, rule 3).
"""

from __future__ import annotations

import logging
import math

from sqlalchemy.orm import Session

from ..db import AuditEventName, Job, Result, ResultInstance, record_event
from ..errors import JobError
from .pyramid import SegPyramid

log = logging.getLogger(__name__)


def _check_area(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise JobError(f"{what} must be a finite, non-negative number of mm², not {value}")
    return value


def record_result(
    *,
    session: Session,
    job: Job,
    pyramid: SegPyramid,
    tumour_area_mm2: float,
    tissue_area_mm2: float,
) -> Result:
    """Add the Result and its ResultInstance rows (flushed, not committed: the caller commits
    them with the job's own state change).

    Idempotent for a retried job: if the job already has a result for the same series with
    the same instances, that result is returned; a different one is an error.
    """
    tumour = _check_area(tumour_area_mm2, "tumour area")
    tissue = _check_area(tissue_area_mm2, "tissue area")
    if not pyramid.instances:
        raise JobError("a SEG pyramid without instances cannot be recorded")
    if job.result is not None:
        existing = job.result
        same = existing.series_instance_uid == pyramid.series_instance_uid and {
            (i.sop_instance_uid, i.sha256) for i in existing.instances
        } == {(i.sop_instance_uid, i.sha256) for i in pyramid.instances}
        if same:
            return existing
        raise JobError(
            f"job {job.id} already has result {existing.id} (series "
            f"{existing.series_instance_uid}) that differs from the one being recorded"
        )
    slide = job.slide
    if slide is not None and slide.study_instance_uid != pyramid.study_instance_uid:
        raise JobError(
            f"SEG study {pyramid.study_instance_uid} is not the study of slide {slide.id} "
            f"({slide.study_instance_uid})"
        )
    result = Result(
        job_id=job.id,
        study_instance_uid=pyramid.study_instance_uid,
        series_instance_uid=pyramid.series_instance_uid,
        segmentation_type=pyramid.segmentation_type,
        tumour_area_mm2=tumour,
        tissue_area_mm2=tissue,
    )
    session.add(result)
    for info in pyramid.instances:
        result.instances.append(
            ResultInstance(
                sop_instance_uid=info.sop_instance_uid,
                sop_class_uid=info.sop_class_uid,
                source_sop_instance_uid=info.source_sop_instance_uid,
                level=info.level,
                rows=info.rows,
                columns=info.columns,
                path=info.path,
                sha256=info.sha256,
                size_bytes=info.size_bytes,
            )
        )
    session.flush()
    record_event(
        session=session,
        event=AuditEventName.RESULT_RECORDED,
        message=(
            f"SEG series {pyramid.series_instance_uid}: {len(pyramid.instances)} instances, "
            f"{pyramid.total_bytes:,} bytes; tumour {tumour:.3f} mm² of {tissue:.3f} mm² tissue"
        ),
        job_id=job.id,
        slide_id=job.slide_id,
        details={
            "result_id": result.id,
            "series_instance_uid": pyramid.series_instance_uid,
            "segmentation_type": pyramid.segmentation_type,
            "frame_of_reference_uid": pyramid.frame_of_reference_uid,
            "frame_of_reference_derived": pyramid.frame_of_reference_derived,
            "instances": [
                {"sop_instance_uid": i.sop_instance_uid, "level": i.level, "sha256": i.sha256}
                for i in pyramid.instances
            ],
        },
    )
    return result
