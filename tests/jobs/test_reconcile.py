"""The reconcile: expired leases come back, lost messages are sent again, finished jobs stay."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from unitumour_dicom.db import AuditEvent, Job, JobState, Result
from unitumour_dicom.jobs import claim_dispatches, claim_job, reconcile_jobs

from .conftest import T0, race

pytestmark = pytest.mark.unittest


def reconcile(runtime, now, queue_depth=None, max_attempts=3, redispatch_s=300.0):
    with runtime.session() as session:
        return reconcile_jobs(
            session=session,
            now=now,
            worker="reconciler@h:9",
            max_attempts=max_attempts,
            redispatch_s=redispatch_s,
            queue_depth=queue_depth,
        )


def claim(runtime, job_id, now, max_attempts=3):
    with runtime.session() as session:
        return claim_job(
            session=session,
            job_id=job_id,
            worker="w@h:1",
            now=now,
            lease_seconds=60,
            max_attempts=max_attempts,
        )


def row(runtime, job_id) -> Job:
    with runtime.session() as session:
        return session.get(Job, job_id)


def test_an_expired_lease_goes_back_to_the_queue_and_is_sent(runtime, make_job):
    job_id = make_job(dispatched_at=T0)
    claim(runtime, job_id, T0)
    # lease still valid: nothing to do
    report = reconcile(runtime, T0 + timedelta(seconds=59))
    assert not report.changed and report.jobs_to_dispatch == []
    report = reconcile(runtime, T0 + timedelta(seconds=61))
    assert report.expired_requeued == [job_id]
    assert report.jobs_to_dispatch == [job_id]
    job = row(runtime, job_id)
    # queued, and marked as sent by this reconcile, which sends it
    assert (job.state, job.lease_owner, job.dispatched_at, job.attempts) == (
        JobState.QUEUED,
        None,
        T0 + timedelta(seconds=61),
        1,
    )
    # a second reconcile at the same moment has nothing to send
    assert reconcile(runtime, T0 + timedelta(seconds=61), queue_depth=0).jobs_to_dispatch == []
    with runtime.session() as session:
        event = session.scalars(
            select(AuditEvent).where(
                AuditEvent.job_id == job_id, AuditEvent.event == "job.lease_expired"
            )
        ).one()
    assert "stopped heartbeating" in event.message and event.details["attempt"] == 1


def test_an_expired_lease_on_the_last_attempt_fails_the_job(runtime, make_job):
    job_id = make_job()
    claim(runtime, job_id, T0, max_attempts=1)
    report = reconcile(runtime, T0 + timedelta(seconds=61), max_attempts=1)
    assert report.expired_failed == [job_id] and report.jobs_to_dispatch == []
    job = row(runtime, job_id)
    assert job.state == JobState.FAILED
    assert job.error.startswith("lease of w@h:1/") and "attempt 1 of 1" in job.error


def test_finished_jobs_are_left_alone(runtime, make_job):
    ids = [
        make_job(state=state, dispatched_at=None)
        for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.SUPERSEDED)
    ]
    report = reconcile(runtime, T0 + timedelta(days=3), queue_depth=0)
    assert not report.changed and report.jobs_to_dispatch == []
    assert [row(runtime, i).state for i in ids] == [
        JobState.SUCCEEDED,
        JobState.FAILED,
        JobState.SUPERSEDED,
    ]


def test_an_unfinished_job_with_a_result_is_marked_succeeded_not_run(runtime, make_job):
    job_id = make_job()
    claim(runtime, job_id, T0)
    with runtime.session() as session:
        session.add(
            Result(
                job_id=job_id,
                study_instance_uid="1.2.3",
                series_instance_uid="1.2.3.5",
                segmentation_type="BINARY",
                tumour_area_mm2=0.0,
                tissue_area_mm2=0.0,
            )
        )
    report = reconcile(runtime, T0 + timedelta(seconds=120))
    assert report.repaired == [job_id]
    assert report.expired_requeued == [] and report.jobs_to_dispatch == []
    assert row(runtime, job_id).state == JobState.SUCCEEDED


def test_never_sent_jobs_are_sent_and_lost_messages_only_when_the_queue_is_empty(runtime, make_job):
    never = make_job(dispatched_at=None)
    recent = make_job(dispatched_at=T0)
    stale = make_job(dispatched_at=T0 - timedelta(seconds=301))
    # a deep queue: only the never-sent job (the stale one's message may be waiting in it)
    assert reconcile(runtime, T0, queue_depth=5).jobs_to_dispatch == [never]
    assert row(runtime, never).dispatched_at == T0
    # empty queue: the stale job's message was lost
    assert reconcile(runtime, T0, queue_depth=0).jobs_to_dispatch == [stale]
    # each is marked as sent: nothing more to send now, whatever the broker says
    assert reconcile(runtime, T0, queue_depth=None).jobs_to_dispatch == []
    later = T0 + timedelta(seconds=301)
    assert reconcile(runtime, later, queue_depth=3).jobs_to_dispatch == []
    assert reconcile(runtime, later, queue_depth=0).jobs_to_dispatch == [never, recent, stale]


def test_a_delayed_retry_is_not_sent_early(runtime, make_job):
    job_id = make_job(dispatched_at=T0 + timedelta(seconds=600))  # as fail_attempt marks it
    assert reconcile(runtime, T0 + timedelta(seconds=400), queue_depth=0).jobs_to_dispatch == []
    later = T0 + timedelta(seconds=901)
    assert reconcile(runtime, later, queue_depth=0).jobs_to_dispatch == [job_id]


def test_a_dispatch_is_claimed_by_one_caller(runtime, make_job):
    """A creator's hook and reconciles race for a new job: exactly one of them sends it."""
    job_id = make_job()

    def claim_it(_: int) -> list[int]:
        with runtime.session() as session:
            return claim_dispatches(session=session, now=T0, job_ids=[job_id])

    won = [i for ids in race(6, claim_it) for i in ids]
    assert won == [job_id]


def test_claimed_jobs_are_not_sent(runtime, make_job):
    job_id = make_job()
    claim(runtime, job_id, T0)
    with runtime.session() as session:
        assert claim_dispatches(session=session, now=T0, job_ids=[job_id]) == []
    assert row(runtime, job_id).dispatched_at is None


def test_queued_jobs_out_of_attempts_end_failed(runtime, make_job):
    job_id = make_job(attempts=3)
    report = reconcile(runtime, T0, max_attempts=3)
    assert report.exhausted_failed == [job_id] and report.jobs_to_dispatch == []
    assert row(runtime, job_id).error == "no attempt left (3 allowed)"
