"""The whole reconcile pass and its loop, without Celery: what a worker's reconcile thread
does, with a list for a broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta

import pytest
from sqlalchemy import select

from unitumour_dicom.db import (
    AuditEvent,
    AuditEventName,
    Delivery,
    DeliveryState,
    Job,
    JobState,
    Result,
)
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.jobs import claim_job
from unitumour_dicom.jobs.reconcile import ReconcileLoop, claim_job_messages, reconcile_pass
from unitumour_dicom.runtime import Runtime

pytestmark = pytest.mark.unittest

WORKER = "segmentation0@h:9"


class ListSender:
    """A broker that keeps what it was given."""

    def __init__(self) -> None:
        self.jobs: list[int] = []
        self.deliveries: list[int] = []

    def send_jobs(self, job_ids: Sequence[int], *, delay_s: float = 0.0) -> None:
        self.jobs += list(job_ids)

    def send_deliveries(self, delivery_ids: Sequence[int], *, delay_s: float = 0.0) -> None:
        self.deliveries += list(delivery_ids)


def sending_delivery(runtime: Runtime, make_job: Callable[..., int], deadline) -> int:  # type: ignore[no-untyped-def]
    """A delivery whose sender claimed it until ``deadline``."""
    job_id = make_job(state=JobState.SUCCEEDED)
    n = uuid.uuid4().int % 10**12
    with runtime.session() as session:
        result = Result(
            job_id=job_id,
            study_instance_uid=f"1.2.826.0.1.3680043.10.3.{n}",
            series_instance_uid=f"1.2.826.0.1.3680043.10.4.{n}",
            segmentation_type="BINARY",
            tumour_area_mm2=1.0,
            tissue_area_mm2=2.0,
        )
        session.add(result)
        session.flush()
        delivery = Delivery(
            result_id=result.id,
            destination="PACS",
            ae_title="PACS",
            host="127.0.0.1",
            port=104,
            state=DeliveryState.SENDING,
            next_attempt_at=deadline,
        )
        session.add(delivery)
        session.flush()
        return delivery.id


def test_one_pass_takes_back_what_crashes_left_and_audits_it(
    runtime: Runtime, make_job: Callable[..., int]
) -> None:
    now = utcnow()
    unsent = make_job()
    crashed = make_job(dispatched_at=now - timedelta(minutes=10))
    with runtime.session() as session:
        claim_job(
            session=session,
            job_id=crashed,
            worker="gone@h:1",
            now=now - timedelta(minutes=10),
            lease_seconds=60,
            max_attempts=3,
        )
    stuck = sending_delivery(runtime, make_job, now - timedelta(seconds=1))

    report = reconcile_pass(runtime=runtime, worker=WORKER, now=now, jobs_queue_depth=5)
    assert report.expired_requeued == [crashed]
    assert sorted(report.jobs_to_dispatch) == sorted([unsent, crashed])
    assert report.recovered_deliveries == [stuck] and report.deliveries_to_dispatch == [stuck]
    with runtime.session() as session:
        (audit,) = session.scalars(
            select(AuditEvent).where(AuditEvent.event == AuditEventName.WORKER_RECONCILED)
        ).all()
        assert audit.actor == WORKER and audit.details["expired_requeued"] == 1  # type: ignore[index]
        assert session.get(Delivery, stuck).state == DeliveryState.PENDING  # type: ignore[union-attr]

    # the next pass finds nothing to do, and writes no audit row
    again = reconcile_pass(runtime=runtime, worker=WORKER, now=now, jobs_queue_depth=5)
    assert not again.changed and again.jobs_to_dispatch == []
    assert again.deliveries_to_dispatch == []
    with runtime.session() as session:
        rows = session.scalars(
            select(AuditEvent.id).where(AuditEvent.event == AuditEventName.WORKER_RECONCILED)
        ).all()
        assert len(rows) == 1


def test_a_creators_hook_claims_new_jobs_once_and_audits_with_a_reason(
    runtime: Runtime, make_job: Callable[..., int]
) -> None:
    first, second = make_job(), make_job()
    now = utcnow()
    with runtime.session() as session:
        won = claim_job_messages(
            session=session, now=now, job_ids=[first, second], actor="web", reason="re-run"
        )
    assert won == [first, second]
    with runtime.session() as session:
        assert claim_job_messages(session=session, now=now, job_ids=[first], actor="web") == []
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.event == AuditEventName.JOB_DISPATCHED)
        ).all()
        assert sorted(e.job_id for e in events) == [first, second]  # type: ignore[type-var]
        assert all("re-run" in e.message for e in events)


def test_the_loop_sends_new_jobs_between_full_passes(
    runtime: Runtime, make_job: Callable[..., int]
) -> None:
    sender = ListSender()
    loop = ReconcileLoop(
        runtime=runtime, worker=WORKER, sender=sender, interval_s=3600, new_job_poll_s=0.05
    )
    first = make_job()
    assert loop.run_once()["jobs_to_dispatch"] == 1 and sender.jobs == [first]
    loop.start()
    try:
        later = make_job()
        deadline = time.monotonic() + 20
        while later not in sender.jobs and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        loop.stop()
    assert sender.jobs == [first, later]
    assert loop.passes == 2  # the one above, and the loop's first; no other full pass
    with runtime.session() as session:
        job = session.get(Job, later)
        assert job is not None and job.dispatched_at is not None and job.state == JobState.QUEUED
