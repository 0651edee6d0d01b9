"""Heartbeats keep a lease alive, and notice when it was lost or the worker must stop."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest

from unitumour_dicom.db import Job
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.errors import JobError
from unitumour_dicom.jobs import (
    JobInterrupted,
    LeaseKeeper,
    LeaseLostError,
    claim_job,
)

pytestmark = pytest.mark.unittest


def claim(runtime, job_id, worker, lease_s, now=None):
    with runtime.session() as session:
        return claim_job(
            session=session,
            job_id=job_id,
            worker=worker,
            now=now or utcnow(),
            lease_seconds=lease_s,
            max_attempts=3,
        )


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_heartbeats_renew_the_lease(runtime, make_job):
    job_id = make_job()
    lease = claim(runtime, job_id, "w1@h:1", lease_s=2.0)
    with LeaseKeeper(
        engine=runtime.engine, lease=lease, lease_seconds=2.0, heartbeat_seconds=0.2
    ) as keeper:
        assert wait_for(lambda: keeper.beats >= 3)
        keeper.check()
    with runtime.session() as session:
        job = session.get(Job, job_id)
    assert job.lease_expires_at > lease.expires_at
    assert keeper.lease.expires_at == job.lease_expires_at


def test_a_lease_taken_over_is_noticed(runtime, make_job):
    job_id = make_job()
    lease = claim(runtime, job_id, "w1@h:1", lease_s=1.0)
    with LeaseKeeper(
        engine=runtime.engine, lease=lease, lease_seconds=1.0, heartbeat_seconds=0.3
    ) as keeper:
        # another worker takes the job over, as after a long stall of this one
        assert claim(runtime, job_id, "w2@h:2", 60.0, now=utcnow() + timedelta(seconds=5))
        assert wait_for(keeper.lost.is_set)
        with pytest.raises(LeaseLostError, match=f"job {job_id}: lease w1@h:1/.* was lost"):
            keeper.check()


def test_a_stop_request_interrupts_the_job(runtime, make_job):
    job_id = make_job()
    lease = claim(runtime, job_id, "w1@h:1", lease_s=5.0)
    stop = threading.Event()
    with LeaseKeeper(
        engine=runtime.engine,
        lease=lease,
        lease_seconds=5.0,
        heartbeat_seconds=1.0,
        stop_requested=stop,
    ) as keeper:
        keeper.check()
        stop.set()
        with pytest.raises(JobInterrupted, match="the worker is stopping"):
            keeper.check()


def test_a_heartbeat_slower_than_the_lease_is_refused(runtime, make_job):
    job_id = make_job()
    lease = claim(runtime, job_id, "w1@h:1", lease_s=5.0)
    with pytest.raises(JobError, match=r"heartbeat every 5\.0s cannot keep a 5\.0s lease"):
        LeaseKeeper(engine=runtime.engine, lease=lease, lease_seconds=5.0, heartbeat_seconds=5.0)
