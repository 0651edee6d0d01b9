"""kill -9 of a worker in the middle of a job: another worker completes it, once.

Embedded broker (SQLite, no server) and SQLite database: the one-machine defaults. The
killed worker's message stays hidden in the broker; the job's lease runs out (no
heartbeats), the reconcile of the surviving worker queues it again, and it completes there:
one result, one delivery, each SEG instance received once by the PACS.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select
from unitumour_services.worker import make_job_dispatcher

from tests.jobs.servicekit import (
    StoreSCP,
    phantom_folders,
    queue_jobs,
    service_config,
    start_worker,
    stop_all,
    wait_until,
    worker_ready,
)
from tests.model.checkpoints import write_untrained_checkpoint
from unitumour_dicom.db import AuditEvent, Delivery, Job, Result

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def broker_messages(config) -> int:
    path = config.settings.broker_url.split("sqlite:///", 1)[1]
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM kombu_message").fetchone()[0]


def audit(runtime, job_id: int) -> list[AuditEvent]:
    with runtime.session() as session:
        return list(
            session.scalars(
                select(AuditEvent).where(AuditEvent.job_id == job_id).order_by(AuditEvent.id)
            )
        )


def test_a_job_whose_worker_is_killed_completes_on_another_worker_once(tmp_path: Path):
    pacs = StoreSCP(tmp_path)
    config = service_config(
        tmp_path,
        model_path=write_untrained_checkpoint(tmp_path),
        pacs_port=pacs.port,
        broker={"visibility_timeout_s": 8.0},
    )
    runtime = config.runtime
    [folder] = phantom_folders(tmp_path / "slides", 1, width=2048, height=1536)
    [job_id] = queue_jobs(runtime, [folder])
    workers = {i: start_worker(config, tmp_path, "segmentation", i) for i in (0, 1)}
    delivery = start_worker(config, tmp_path, "delivery")
    procs = [*workers.values(), delivery]
    try:
        for proc in procs:
            wait_until(lambda proc=proc: worker_ready(proc), 120, f"{proc.name} to be ready")
        make_job_dispatcher(config.settings).dispatch_jobs([job_id])
        started = wait_until(
            lambda: [e for e in audit(runtime, job_id) if e.event == "job.started"],
            60,
            "the job to start",
            interval=0.02,
        )
        victim_index = int(started[0].actor.removeprefix("segmentation")[0])
        victim, survivor = workers[victim_index], workers[1 - victim_index]
        victim.kill9()  # mid-job: inference of a 2048 x 1536 slide takes seconds
        with runtime.session() as session:
            job = session.get(Job, job_id)
            assert job.state == "running" and job.attempts == 1

        def delivered() -> bool:
            with runtime.session() as session:
                return (
                    session.scalar(
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.state == "delivered")
                    )
                    == 1
                )

        wait_until(delivered, 120, "the SEG to be delivered")
        # The killed worker's message was hidden, not lost: after its visibility timeout it
        # is delivered again and dropped (job leased, or already done), and acknowledged: no
        # message is left in the embedded broker.
        wait_until(lambda: broker_messages(config) == 0, 60, "the broker to be empty")
        survivor_log = survivor.text()
        assert "made visible again" in survivor_log
        assert "already has its result" in survivor_log or " is leased by " in survivor_log
    finally:
        stop_all(procs)
        pacs.stop()

    with runtime.session() as session:
        job = session.get(Job, job_id)
        results = session.scalars(select(Result).where(Result.job_id == job_id)).all()
        deliveries = session.scalars(select(Delivery)).all()
        result_instances = [(i.sop_instance_uid, i.sha256) for i in results[0].instances]
        jobs = session.scalar(select(func.count()).select_from(Job))
    assert job.state == "succeeded" and job.attempts == 2
    assert jobs == 1 and len(results) == 1 and len(deliveries) == 1
    assert deliveries[0].attempts == 1
    events = [e.event for e in audit(runtime, job_id)]
    assert events.count("job.claimed") == 2
    assert "job.lease_expired" in events and events.count("job.succeeded") == 1
    claims = [e.actor for e in audit(runtime, job_id) if e.event == "job.claimed"]
    assert claims[0].startswith(f"segmentation{victim_index}@")
    assert claims[1].startswith(f"segmentation{1 - victim_index}@")
    received = pacs.files()
    assert len(received) == len(result_instances)  # each result object exactly once
    uids = sorted(str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in received)
    assert uids == sorted(uid for uid, _ in result_instances)
