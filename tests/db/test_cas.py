"""compare_and_set: exactly one of several racing callers wins, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from unitumour_dicom.db import Job, JobState, Slide, compare_and_set
from unitumour_dicom.runtime import Runtime

pytestmark = pytest.mark.integration

T0 = datetime(2026, 1, 5, 9, 0, 0, tzinfo=UTC)


def _job(runtime: Runtime, **values: object) -> int:
    with runtime.session() as session:
        slide = Slide(
            study_instance_uid="1.2.826.0.1.3680043.10.1.7",
            series_instance_uid="1.2.826.0.1.3680043.10.2.7",
            state="settled",
        )
        session.add(slide)
        session.flush()
        job = Job(slide_id=slide.id, state=values.pop("state", JobState.QUEUED), **values)
        session.add(job)
        session.flush()
        return job.id


def _row(runtime: Runtime, job_id: int) -> Job:
    with runtime.session() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def test_the_update_happens_only_when_the_row_is_as_expected(runtime: Runtime) -> None:
    job_id = _job(runtime)
    with runtime.session() as session:
        assert not compare_and_set(
            session, Job, job_id, state=JobState.RUNNING, values={"state": JobState.FAILED}
        )
        assert not compare_and_set(
            session, Job, job_id + 1000, state=JobState.QUEUED, values={"state": JobState.FAILED}
        )
    assert _row(runtime, job_id).state == JobState.QUEUED

    with runtime.session() as session:
        assert compare_and_set(
            session,
            Job,
            job_id,
            state=(JobState.QUEUED, JobState.RUNNING),
            values={"state": JobState.RUNNING, "lease_owner": "a", "attempts": Job.attempts + 1},
        )
    job = _row(runtime, job_id)
    assert (job.state, job.lease_owner, job.attempts) == (JobState.RUNNING, "a", 1)


def test_further_conditions_take_part_in_the_comparison(runtime: Runtime) -> None:
    job_id = _job(runtime, state=JobState.RUNNING, lease_owner="a", lease_expires_at=T0, attempts=1)
    later = T0 + timedelta(seconds=1)
    with runtime.session() as session:
        # the lease has not run out at T0 - 1 s: not ours to take back
        assert not compare_and_set(
            session,
            Job,
            job_id,
            state=JobState.RUNNING,
            where=[Job.lease_expires_at < T0 - timedelta(seconds=1)],
            values={"state": JobState.QUEUED},
        )
        assert not compare_and_set(
            session,
            Job,
            job_id,
            state=JobState.RUNNING,
            where=[Job.lease_owner == "b", Job.lease_expires_at < later],
            values={"state": JobState.QUEUED},
        )
        assert compare_and_set(
            session,
            Job,
            job_id,
            state=JobState.RUNNING,
            where=[Job.lease_owner == "a", Job.lease_expires_at < later],
            values={"state": JobState.QUEUED, "lease_owner": None},
        )
    job = _row(runtime, job_id)
    assert (job.state, job.lease_owner) == (JobState.QUEUED, None)


def test_of_racing_callers_exactly_one_wins(runtime: Runtime) -> None:
    job_id = _job(runtime)
    n = 6
    barrier = threading.Barrier(n)
    wins: list[str] = []
    errors: list[BaseException] = []

    def claim(i: int) -> None:
        try:
            barrier.wait()
            with runtime.session() as session:
                if compare_and_set(
                    session,
                    Job,
                    job_id,
                    state=JobState.QUEUED,
                    values={"state": JobState.RUNNING, "lease_owner": f"w{i}"},
                ):
                    wins.append(f"w{i}")
        except BaseException as exc:  # pragma: no cover (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(wins) == 1
    assert _row(runtime, job_id).lease_owner == wins[0]
