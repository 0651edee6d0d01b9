"""Recording a written result: the result row, one row per SEG instance and one per further
object (SR, bulk annotations, key image), each with its kind, series and digest.

The pipeline calls this after ``write_seg_pyramid`` and commits it before any delivery is
planned, so everything that leaves the building is on record first (DESIGN.md, rule 3).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from ..db import AuditEventName, Job, Result, ResultInstance, record_event
from ..db.enums import ResultKind
from ..errors import JobError
from .pyramid import SegPyramid

if TYPE_CHECKING:  # results imports the writers, which import seg
    from ..results import ResultObject

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
    objects: Sequence[ResultObject] = (),
) -> Result:
    """Add the Result and its ResultInstance rows (flushed, not committed: the caller commits
    them with the job's own state change): the SEG pyramid's levels (kind seg), then
    ``objects``, the further objects written for the job.

    Idempotent for a retried job: if the job already has a result for the same series with
    the same instances, that result is returned; a different one is an error.
    """
    tumour = _check_area(tumour_area_mm2, "tumour area")
    tissue = _check_area(tissue_area_mm2, "tissue area")
    if not pyramid.instances:
        raise JobError("a SEG pyramid without instances cannot be recorded")
    for obj in objects:
        if obj.study_instance_uid != pyramid.study_instance_uid:
            raise JobError(f"the {obj.kind} object belongs to another study than the SEG")
    wanted = {(i.sop_instance_uid, i.sha256) for i in pyramid.instances} | {
        (o.sop_instance_uid, o.sha256) for o in objects
    }
    if job.result is not None:
        existing = job.result
        same = (
            existing.series_instance_uid == pyramid.series_instance_uid
            and {(i.sop_instance_uid, i.sha256) for i in existing.instances} == wanted
        )
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
                kind=ResultKind.SEG,
                series_instance_uid=pyramid.series_instance_uid,
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
    for obj in objects:
        result.instances.append(
            ResultInstance(
                kind=obj.kind,
                series_instance_uid=obj.series_instance_uid,
                sop_instance_uid=obj.sop_instance_uid,
                sop_class_uid=obj.sop_class_uid,
                source_sop_instance_uid=obj.source_sop_instance_uid,
                level=0,
                rows=obj.rows,
                columns=obj.columns,
                path=obj.path,
                sha256=obj.sha256,
                size_bytes=obj.size_bytes,
            )
        )
    session.flush()
    further = "".join(f", {o.kind} {o.size_bytes:,} bytes" for o in objects)
    record_event(
        session=session,
        event=AuditEventName.RESULT_RECORDED,
        message=(
            f"SEG series {pyramid.series_instance_uid}: {len(pyramid.instances)} instances, "
            f"{pyramid.total_bytes:,} bytes{further}; tumour {tumour:.3f} mm² of "
            f"{tissue:.3f} mm² tissue"
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
            "objects": [
                {
                    "kind": o.kind,
                    "series_instance_uid": o.series_instance_uid,
                    "sop_instance_uid": o.sop_instance_uid,
                    "sha256": o.sha256,
                }
                for o in objects
            ],
        },
    )
    return result
