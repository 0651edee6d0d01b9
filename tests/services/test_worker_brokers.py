"""Two workers, ten slides, the broker restarted in the middle: each slide processed once,
nothing lost. Against real Redis and RabbitMQ servers (private ones, so that restarting them
disturbs nobody), with PostgreSQL and SQLite as the database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import create_engine, func, select, text
from unitumour_services.worker import make_job_dispatcher

from tests.jobs.servicekit import (
    RabbitServer,
    RedisServer,
    StoreSCP,
    group_ready,
    job_states,
    phantom_folders,
    queue_jobs,
    service_config,
    start_worker_group,
    stop_all,
    wait_until,
)
from tests.model.checkpoints import write_untrained_checkpoint
from unitumour_dicom.db import AuditEvent, Delivery, Job, Result, ResultInstance

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_SLIDES = 10


def _empty_schema(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'data' / 'unitumour.db'}"
        return
    url = request.getfixturevalue("postgres_database")
    _empty_schema(url)
    yield url
    _empty_schema(url)


@pytest.mark.parametrize(
    ("broker_kind", "database_url"),
    [
        pytest.param("redis", "postgresql", marks=pytest.mark.postgres, id="redis-postgresql"),
        pytest.param("rabbitmq", "sqlite", id="rabbitmq-sqlite"),
    ],
    indirect=["database_url"],
)
def test_ten_slides_two_workers_and_a_broker_restart(
    broker_kind: str, database_url: str, tmp_path: Path
):
    broker = RedisServer(tmp_path) if broker_kind == "redis" else RabbitServer(tmp_path)
    pacs = StoreSCP(tmp_path)
    procs = []
    try:
        config = service_config(
            tmp_path,
            model_path=write_untrained_checkpoint(tmp_path),
            database_url=database_url,
            broker_url=broker.url,
            pacs_port=pacs.port,
            worker={"segmentation_processes": 2},
        )
        runtime = config.runtime
        job_ids = queue_jobs(
            runtime, phantom_folders(tmp_path / "slides", N_SLIDES, width=768, height=512)
        )
        assert len(job_ids) == N_SLIDES
        # the production path: `unitumour worker`, a supervisor that runs two segmentation
        # processes and the delivery pool, and restarts any that dies
        workers = start_worker_group(config, tmp_path)
        procs = [workers]
        wait_until(lambda: group_ready(workers, 3), 180, "the three worker processes")
        # the listener's hook sends new jobs; a worker's reconcile may have sent them already:
        # either way each is sent once (the dispatch is a compare-and-set)
        make_job_dispatcher(config.settings).dispatch_jobs(job_ids)

        def succeeded() -> int:
            return sum(s == "succeeded" for s in job_states(runtime, job_ids).values())

        wait_until(lambda: succeeded() >= 3, 180, "three slides done")
        done_before = succeeded()
        broker.restart()  # queued messages must survive; workers reconnect
        assert done_before < N_SLIDES, "the restart came too late to be in the middle"

        def all_delivered() -> bool:
            with runtime.session() as session:
                delivered = session.scalar(
                    select(func.count()).select_from(Delivery).where(Delivery.state == "delivered")
                )
            return succeeded() == N_SLIDES and delivered == N_SLIDES

        wait_until(all_delivered, 300, "every slide processed and delivered")
    finally:
        stop_all(procs)
        pacs.stop()
        broker.stop()

    assert workers.popen.returncode == 0, workers.text()[-3000:]
    with runtime.session() as session:
        jobs = session.scalars(select(Job).where(Job.id.in_(job_ids))).all()
        claims = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.event == "job.claimed")
        )
        results = session.scalars(select(Result)).all()
        seg_uids = session.scalars(select(ResultInstance.sop_instance_uid)).all()
        deliveries = session.scalars(select(Delivery)).all()
    # each slide processed once: one claim, one attempt, one result each
    assert all(j.state == "succeeded" and j.attempts == 1 for j in jobs)
    assert claims == N_SLIDES
    assert sorted(r.job_id for r in results) == sorted(job_ids)
    assert len(deliveries) == N_SLIDES and all(d.state == "delivered" for d in deliveries)
    # both workers took part
    with runtime.session() as session:
        actors = set(
            session.scalars(select(AuditEvent.actor).where(AuditEvent.event == "job.claimed"))
        )
    assert {a.split("@")[0] for a in actors} == {"segmentation0", "segmentation1"}
    restarts = workers.text().count("restarting")
    print(f"{broker_kind}: {restarts} worker process(es) restarted after the broker restart")
    # the PACS received every SEG instance, each once
    received = [
        str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in pacs.files()
    ]
    assert sorted(received) == sorted(seg_uids)
