"""record_result: the result row and one row per SEG instance with its digest, before any
delivery; idempotent for a retried job; refuses a different result for the same job."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from unitumour_dicom.db import AuditEvent, Job, Slide
from unitumour_dicom.errors import JobError
from unitumour_dicom.seg import record_result, write_seg_pyramid

from .conftest import blob_mask
from .wsi_headers import make_wsi_headers

pytestmark = pytest.mark.unittest


def test_record_result_rows_digests_and_idempotence(runtime, algorithm) -> None:
    src = make_wsi_headers(600, 400, tile=128, levels=2)
    job_uuid = str(uuid.uuid4())
    pyramid = write_seg_pyramid(
        source_datasets=src,
        mask=blob_mask(400, 600, 0.5),
        probability=None,
        algorithm=algorithm,
        settings=runtime.settings.seg,
        uid_seed=job_uuid,
        store=runtime.store,
    )
    with runtime.session() as session:
        slide = Slide(
            study_instance_uid=str(src[0].StudyInstanceUID),
            series_instance_uid=str(src[0].SeriesInstanceUID),
        )
        job = Job(uuid=job_uuid, slide=slide)
        session.add_all([slide, job])
        session.flush()
        result = record_result(
            session=session, job=job, pyramid=pyramid, tumour_area_mm2=2.5, tissue_area_mm2=30.0
        )
        result_id, job_id = result.id, job.id
    with runtime.session() as session:
        job = session.get(Job, job_id)
        result = job.result
        assert result.id == result_id
        assert result.series_instance_uid == pyramid.series_instance_uid
        assert (result.tumour_area_mm2, result.tissue_area_mm2) == (2.5, 30.0)
        rows = [(i.level, i.sop_instance_uid, i.sha256, i.size_bytes) for i in result.instances]
        assert rows == [
            (i.level, i.sop_instance_uid, i.sha256, i.size_bytes) for i in pyramid.instances
        ]
        for inst in result.instances:
            runtime.store.verify(inst.path, inst.sha256)
        assert (
            record_result(
                session=session, job=job, pyramid=pyramid, tumour_area_mm2=2.5, tissue_area_mm2=30.0
            ).id
            == result_id
        )
        other = write_seg_pyramid(
            source_datasets=src,
            mask=blob_mask(400, 600, 0.5, seed=9),
            probability=None,
            algorithm=algorithm,
            settings=runtime.settings.seg,
            uid_seed=str(uuid.uuid4()),
            store=runtime.store,
        )
        with pytest.raises(JobError, match="already has result"):
            record_result(
                session=session, job=job, pyramid=other, tumour_area_mm2=1, tissue_area_mm2=1
            )
        with pytest.raises(JobError, match="finite, non-negative"):
            record_result(
                session=session,
                job=job,
                pyramid=pyramid,
                tumour_area_mm2=float("nan"),
                tissue_area_mm2=1,
            )
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.event == "result.recorded")
        ).one()
        assert event.job_id == job_id
        assert event.details["series_instance_uid"] == pyramid.series_instance_uid
        assert event.details["frame_of_reference_derived"] is False
