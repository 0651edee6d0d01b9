"""The Celery side without a worker process: configuration, dispatch, reconcile, GPUs."""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
import subprocess
from datetime import timedelta

import pytest
from unitumour_services.worker import (
    DELIVERY_QUEUE,
    SEGMENT_TASK,
    SEGMENTATION_QUEUE,
    bind_context,
    celery_config,
    create_celery_app,
    queue_depth,
    reconciler_for,
    worker_config,
    worker_specs,
)

from unitumour_dicom.config import load_settings
from unitumour_dicom.db import AuditEvent, Job, Slide
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.jobs import claim_job

pytestmark = pytest.mark.integration


def messages(settings) -> list[tuple[str, str, list]]:
    """(queue, task, args) of every message waiting in the embedded broker."""
    path = settings.broker_url.split("sqlite:///", 1)[1]
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT q.name, m.payload FROM kombu_message m JOIN kombu_queue q "
            "ON m.queue_id = q.id WHERE m.visible ORDER BY m.id"
        ).fetchall()
    out = []
    for queue, payload in rows:
        message = json.loads(payload)
        body = json.loads(base64.b64decode(message["body"]))
        out.append((queue, message["headers"]["task"], body[0]))
    return out


def new_job(runtime, **values) -> int:
    with runtime.session() as session:
        slide = Slide(
            study_instance_uid="1.2.3", series_instance_uid=f"1.2.3.{utcnow().timestamp()}"
        )
        session.add(slide)
        session.flush()
        job = Job(slide_id=slide.id, **values)
        session.add(job)
        session.flush()
        return job.id


@pytest.mark.unittest
def test_the_configuration_keeps_state_in_sql_and_messages_until_done(tmp_path):
    settings = load_settings(data_dir=tmp_path, broker={"url": "redis://127.0.0.1:1/0"})
    conf = celery_config(settings)
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_ignore_result"] and conf["result_backend"] is None
    assert conf["broker_transport_options"]["visibility_timeout"] == 3600.0
    assert conf["task_routes"][SEGMENT_TASK]["queue"] == SEGMENTATION_QUEUE
    assert conf["broker_connection_max_retries"] is None
    assert conf["worker_enable_prefetch_count_reduction"] is False
    embedded = celery_config(load_settings(data_dir=tmp_path))
    assert embedded["broker_url"] == f"unitumour-sqla+sqlite:///{tmp_path / 'broker.sqlite'}"
    assert embedded["worker_enable_remote_control"] is False


def test_a_new_job_is_sent_once_whoever_asks(runtime):
    app = create_celery_app(runtime.settings)
    ctx = bind_context(app, runtime.settings)
    job_id = new_job(runtime)
    assert ctx.dispatcher.dispatch_jobs([job_id], reason="test") == [job_id]
    assert ctx.dispatcher.dispatch_jobs([job_id]) == []  # marked as sent: not again
    assert messages(runtime.settings) == [(SEGMENTATION_QUEUE, SEGMENT_TASK, [job_id])]
    assert queue_depth(app, SEGMENTATION_QUEUE) == 1
    with runtime.session() as session:
        assert session.get(Job, job_id).dispatched_at is not None
        [event] = session.query(AuditEvent).filter_by(job_id=job_id).all()
    assert event.event == "job.dispatched" and event.message.endswith(": test")


def test_the_reconcile_sends_back_a_job_whose_worker_died(runtime):
    app = create_celery_app(runtime.settings)
    ctx = bind_context(app, runtime.settings)
    job_id = new_job(runtime, dispatched_at=utcnow())
    with runtime.session() as session:
        claim_job(
            session=session,
            job_id=job_id,
            worker="dead@host:1",
            now=utcnow() - timedelta(seconds=600),
            lease_seconds=300,
            max_attempts=3,
        )
    counts = reconciler_for(ctx).run_once()
    assert counts["expired_requeued"] == 1 and counts["jobs_to_dispatch"] == 1
    assert messages(runtime.settings) == [(SEGMENTATION_QUEUE, SEGMENT_TASK, [job_id])]
    with runtime.session() as session:
        assert session.get(Job, job_id).state == "queued"
    # nothing left to do: the next pass sends nothing more
    assert reconciler_for(ctx).run_once()["jobs_to_dispatch"] == 0
    assert len(messages(runtime.settings)) == 1


@pytest.mark.unittest
def test_one_segmentation_process_per_visible_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    settings = load_settings(data_dir=tmp_path)
    specs = worker_specs(settings, cli_prefix=["unitumour"])
    assert [(s.name, dict(s.env)) for s in specs] == [
        ("segmentation-0", {"CUDA_VISIBLE_DEVICES": "2"}),
        ("segmentation-1", {"CUDA_VISIBLE_DEVICES": "3"}),
        ("delivery", {}),
    ]
    assert specs[1].argv == ["unitumour", "worker", "--queue", "segmentation", "--index", "1"]
    three = load_settings(data_dir=tmp_path, worker={"segmentation_processes": 3})
    assert [dict(s.env) for s in worker_specs(three, cli_prefix=["u"])][:3] == [
        {"CUDA_VISIBLE_DEVICES": "2"},
        {"CUDA_VISIBLE_DEVICES": "3"},
        {"CUDA_VISIBLE_DEVICES": "2"},
    ]
    cpu = load_settings(data_dir=tmp_path, model={"device": "cpu"})
    assert [s.name for s in worker_specs(cpu, cli_prefix=["u"])] == ["segmentation-0", "delivery"]


def _negotiated_heartbeats() -> dict[int, int]:
    """RabbitMQ's view of its connections: client port -> negotiated heartbeat (s)."""
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_connections", "--no-table-headers", "peer_port", "timeout"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    rows = (line.split() for line in out.splitlines())
    return {int(port): int(timeout) for port, timeout in rows}


@pytest.mark.skipif(shutil.which("rabbitmqctl") is None, reason="RabbitMQ is not installed")
def test_the_segmentation_worker_runs_without_rabbitmq_heartbeats(tmp_path) -> None:
    """A solo pool cannot answer heartbeats while a job runs; the delivery pool can."""
    settings = load_settings(
        data_dir=tmp_path, broker={"url": "amqp://guest:guest@127.0.0.1:5672//"}
    )
    seen = {}
    for queue in (SEGMENTATION_QUEUE, DELIVERY_QUEUE):
        app = create_celery_app(settings)
        app.conf.update(worker_config(settings, queue))
        # the connection the worker's consumer opens (celery.worker.consumer: amqheartbeat)
        with app.connection_for_read(heartbeat=app.conf.broker_heartbeat) as conn:
            conn.ensure_connection(max_retries=3)
            port = conn.connection.sock.getsockname()[1]
            seen[queue] = _negotiated_heartbeats()[port]
    assert seen[SEGMENTATION_QUEUE] == 0
    assert seen[DELIVERY_QUEUE] > 0
    assert worker_config(load_settings(data_dir=tmp_path), SEGMENTATION_QUEUE) == {}
