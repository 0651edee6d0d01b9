"""Leases: exactly one worker runs a job; lost leases, results and finished jobs stop it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from unitumour_dicom.db import AuditEvent, Job, JobState, Result
from unitumour_dicom.jobs import (
    claim_job,
    complete_job,
    fail_attempt,
    release_job,
    renew_lease,
    why_not_claimable,
)

from .conftest import T0, race

pytestmark = pytest.mark.unittest


def claim(runtime, job_id, worker="w1@h:1", now=T0, lease_s=60.0, max_attempts=3):
    with runtime.session() as session:
        return claim_job(
            session=session,
            job_id=job_id,
            worker=worker,
            now=now,
            lease_seconds=lease_s,
            max_attempts=max_attempts,
        )


def job_row(runtime, job_id) -> Job:
    with runtime.session() as session:
        return session.get(Job, job_id)


def events(runtime, job_id) -> list[str]:
    with runtime.session() as session:
        return list(
            session.scalars(
                select(AuditEvent.event).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)
            )
        )


def test_a_queued_job_is_claimed_once(runtime, make_job):
    job_id = make_job()
    lease = claim(runtime, job_id)
    assert lease is not None and lease.attempt == 1 and lease.job_id == job_id
    assert lease.owner.startswith("w1@h:1/")
    assert claim(runtime, job_id, worker="w2@h:2", now=T0 + timedelta(seconds=30)) is None
    row = job_row(runtime, job_id)
    assert row.state == JobState.RUNNING
    assert row.lease_owner == lease.owner
    assert row.lease_expires_at == T0 + timedelta(seconds=60)
    assert row.attempts == 1 and row.max_attempts == 3
    with runtime.session() as session:
        why = why_not_claimable(
            session=session, job_id=job_id, now=T0 + timedelta(seconds=30), max_attempts=3
        )
    assert why.startswith(f"job {job_id} is leased by w1@h:1/")
    assert events(runtime, job_id) == ["job.claimed"]


def test_concurrent_claims_have_one_winner(runtime, make_job):
    """Eight threads, eight sessions, one job: the compare-and-set lets exactly one through."""
    job_id = make_job()
    leases = race(8, lambda i: claim(runtime, job_id, worker=f"w{i}@h:{i}"))
    winners = [lease for lease in leases if lease is not None]
    assert len(leases) == 8
    assert len(winners) == 1
    assert job_row(runtime, job_id).lease_owner == winners[0].owner


def test_an_expired_lease_is_taken_over_and_the_old_owner_loses(runtime, make_job):
    job_id = make_job()
    first = claim(runtime, job_id, worker="w1@h:1")
    later = T0 + timedelta(seconds=61)
    second = claim(runtime, job_id, worker="w2@h:2", now=later)
    assert second is not None and second.attempt == 2
    with runtime.session() as session:
        assert renew_lease(session=session, lease=first, now=later, lease_seconds=60) is None
        assert not complete_job(session=session, lease=first, now=later, worker="w1@h:1")
        assert (
            fail_attempt(session=session, lease=first, now=later, worker="w1@h:1", error="x")
            is None
        )
    with runtime.session() as session:
        claimed = session.scalars(
            select(AuditEvent).where(AuditEvent.job_id == job_id, AuditEvent.event == "job.claimed")
        ).all()
    assert claimed[-1].details["took_over_from"] == first.owner
    assert job_row(runtime, job_id).lease_owner == second.owner


def test_renewing_moves_the_lease_forward(runtime, make_job):
    job_id = make_job()
    lease = claim(runtime, job_id)
    with runtime.session() as session:
        renewed = renew_lease(
            session=session, lease=lease, now=T0 + timedelta(seconds=50), lease_seconds=60
        )
    assert renewed is not None and renewed.expires_at == T0 + timedelta(seconds=110)
    # at T0+61 the original lease would have run out; the renewed one has not
    assert claim(runtime, job_id, worker="w2@h:2", now=T0 + timedelta(seconds=61)) is None
    assert job_row(runtime, job_id).heartbeat_at == T0 + timedelta(seconds=50)


def test_a_job_with_a_result_is_never_claimed(runtime, make_job):
    job_id = make_job()
    with runtime.session() as session:
        session.add(
            Result(
                job_id=job_id,
                study_instance_uid="1.2.3",
                series_instance_uid="1.2.3.4",
                segmentation_type="BINARY",
                tumour_area_mm2=1.0,
                tissue_area_mm2=2.0,
            )
        )
    assert claim(runtime, job_id) is None
    with runtime.session() as session:
        assert why_not_claimable(session=session, job_id=job_id, now=T0, max_attempts=3) == (
            f"job {job_id} already has its result"
        )


@pytest.mark.parametrize(
    "state", [JobState.SUCCEEDED, JobState.FAILED, JobState.SUPERSEDED, JobState.CANCELLED]
)
def test_finished_jobs_are_never_claimed(runtime, make_job, state):
    job_id = make_job(state=state)
    assert claim(runtime, job_id) is None
    with runtime.session() as session:
        assert why_not_claimable(session=session, job_id=job_id, now=T0, max_attempts=3) == (
            f"job {job_id} is {state}"
        )


def test_a_missing_job_is_not_claimed(runtime):
    assert claim(runtime, 424242) is None
    with runtime.session() as session:
        assert why_not_claimable(session=session, job_id=424242, now=T0, max_attempts=3) == (
            "job 424242 does not exist"
        )


def test_failures_retry_until_the_configured_attempts_then_fail(runtime, make_job):
    job_id = make_job()
    now = T0
    states = []
    for attempt in (1, 2, 3):
        lease = claim(runtime, job_id, now=now, max_attempts=3)
        assert lease is not None and lease.attempt == attempt
        with runtime.session() as session:
            states.append(
                fail_attempt(
                    session=session,
                    lease=lease,
                    now=now,
                    worker="w1@h:1",
                    error=f"SlideError: frame 7 is corrupt (attempt {attempt})",
                    retry_at=now + timedelta(seconds=30),
                )
            )
        if attempt < 3:
            assert job_row(runtime, job_id).dispatched_at == now + timedelta(seconds=30)
        now += timedelta(seconds=40)
    assert states == [JobState.QUEUED, JobState.QUEUED, JobState.FAILED]
    row = job_row(runtime, job_id)
    assert row.state == JobState.FAILED
    assert row.error == "SlideError: frame 7 is corrupt (attempt 3)"
    assert row.finished_at == T0 + timedelta(seconds=80)
    assert row.lease_owner is None
    assert claim(runtime, job_id, now=now) is None
    assert events(runtime, job_id) == [
        "job.claimed",
        "job.retried",
        "job.claimed",
        "job.retried",
        "job.claimed",
        "job.failed",
    ]


def test_a_failure_without_retry_ends_the_job_at_once(runtime, make_job):
    job_id = make_job()
    lease = claim(runtime, job_id)
    with runtime.session() as session:
        state = fail_attempt(
            session=session, lease=lease, now=T0, worker="w", error="bad", retry=False
        )
    assert state == JobState.FAILED and job_row(runtime, job_id).attempts == 1


def test_completion_clears_the_lease_and_records_provenance(runtime, make_job):
    job_id = make_job()
    lease = claim(runtime, job_id)
    with runtime.session() as session:
        assert complete_job(
            session=session,
            lease=lease,
            now=T0 + timedelta(seconds=5),
            worker="w1@h:1",
            device="cpu",
            timings={"total": 5.0},
        )
    row = job_row(runtime, job_id)
    assert (row.state, row.device, row.timings) == (JobState.SUCCEEDED, "cpu", {"total": 5.0})
    assert row.lease_owner is None and row.lease_expires_at is None
    assert row.finished_at == T0 + timedelta(seconds=5)
    assert claim(runtime, job_id, now=T0 + timedelta(hours=1)) is None


def test_release_gives_the_job_back_without_spending_an_attempt(runtime, make_job):
    job_id = make_job(dispatched_at=T0)
    lease = claim(runtime, job_id)
    with runtime.session() as session:
        assert release_job(session=session, lease=lease, now=T0, worker="w", reason="SIGTERM")
    row = job_row(runtime, job_id)
    # queued again, the attempt not counted, marked as sent now (the releaser sends it)
    assert (row.state, row.attempts, row.lease_owner, row.dispatched_at) == (
        JobState.QUEUED,
        0,
        None,
        T0,
    )
    again = claim(runtime, job_id, worker="w2@h:2")
    assert again is not None and again.attempt == 1
    with runtime.session() as session:
        # the first lease is gone: releasing it again changes nothing
        assert not release_job(session=session, lease=lease, now=T0, worker="w", reason="x")
    assert events(runtime, job_id) == ["job.claimed", "job.released", "job.claimed"]
