"""SIGTERM to a worker in the middle of a job: the job finishes, or, past the shutdown
timeout, goes back to the queue without spending an attempt and completes elsewhere."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from sqlalchemy import select
from unitumour_services.worker import make_job_dispatcher

from tests.jobs.servicekit import (
    job_states,
    phantom_folders,
    queue_jobs,
    service_config,
    start_worker,
    stop_all,
    wait_until,
    worker_ready,
)
from tests.model.checkpoints import write_untrained_checkpoint
from unitumour_dicom.db import AuditEvent, Job

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def events(runtime, job_id: int) -> list[tuple[str, str]]:
    with runtime.session() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)
        )
        return [(e.event, e.actor or "") for e in rows]


def started(runtime, job_id: int) -> bool:
    return any(event == "job.started" for event, _ in events(runtime, job_id))


def test_sigterm_finishes_the_running_job_or_gives_it_back(tmp_path: Path):
    model = write_untrained_checkpoint(tmp_path)
    patient = service_config(tmp_path, model_path=model, worker={"shutdown_timeout_s": 120.0})
    hasty = service_config(
        tmp_path, model_path=model, config_name="hasty.toml", worker={"shutdown_timeout_s": 0.2}
    )
    runtime = patient.runtime
    first_slide, second_slide = phantom_folders(tmp_path / "slides", 2, width=2048, height=1536)
    procs = []
    try:
        # 1. a worker that may take its time: SIGTERM mid-job, the job finishes, exit 0
        worker = start_worker(patient, tmp_path, "segmentation", 0, log_name="patient")
        procs.append(worker)
        wait_until(lambda: worker_ready(worker), 120, "the first worker")
        [first] = queue_jobs(runtime, [first_slide])
        make_job_dispatcher(patient.settings).dispatch_jobs([first])
        wait_until(lambda: started(runtime, first), 60, "the first job to start", interval=0.02)
        assert worker.stop(signal.SIGTERM, timeout=120) == 0, worker.text()[-2000:]
        with runtime.session() as session:
            job = session.get(Job, first)
        assert (job.state, job.attempts) == ("succeeded", 1)

        # 2. a worker with a short shutdown timeout: the job goes back to the queue
        worker = start_worker(hasty, tmp_path, "segmentation", 0, log_name="hasty")
        procs.append(worker)
        wait_until(lambda: worker_ready(worker), 120, "the second worker")
        [second] = queue_jobs(runtime, [second_slide])  # its reconcile sends it
        wait_until(lambda: started(runtime, second), 60, "the second job to start", interval=0.02)
        assert worker.stop(signal.SIGTERM, timeout=120) == 0, worker.text()[-2000:]
        with runtime.session() as session:
            job = session.get(Job, second)
        assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)
        last_event, actor = events(runtime, second)[-1]
        assert last_event == "job.released" and actor.startswith("segmentation0@")

        # 3. the next worker runs it, as its first attempt
        worker = start_worker(patient, tmp_path, "segmentation", 1, log_name="next")
        procs.append(worker)
        wait_until(
            lambda: job_states(runtime, [second])[second] == "succeeded",
            180,
            "the given-back job to complete",
        )
    finally:
        stop_all(procs)
    with runtime.session() as session:
        job = session.get(Job, second)
    assert (job.state, job.attempts) == ("succeeded", 1)
    assert [e for e, _ in events(runtime, second)].count("job.claimed") == 2
