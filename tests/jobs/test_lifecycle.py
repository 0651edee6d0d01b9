"""A worker's start and stop are on record; a stop the database cannot take is logged."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from unitumour_dicom.config import load_settings
from unitumour_dicom.db import AuditEvent, AuditEventName
from unitumour_dicom.jobs.lifecycle import record_worker_started, record_worker_stopped
from unitumour_dicom.runtime import Runtime

pytestmark = pytest.mark.unittest


def test_start_and_stop_are_audited(runtime: Runtime) -> None:
    record_worker_started(
        runtime=runtime, worker="delivery0@h:1", queue="delivery", pool="threads", concurrency=4
    )
    assert record_worker_stopped(runtime=runtime, worker="delivery0@h:1")
    with runtime.session() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
        assert [(r.event, r.actor) for r in rows] == [
            (AuditEventName.WORKER_STARTED, "delivery0@h:1"),
            (AuditEventName.WORKER_STOPPED, "delivery0@h:1"),
        ]
        assert rows[0].details == {"queue": "delivery", "pool": "threads", "concurrency": 4}


def test_a_stop_the_database_cannot_take_is_logged_not_raised(tmp_path, caplog) -> None:
    gone = load_settings(
        data_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'missing' / 'x.db'}"}
    )
    assert not record_worker_stopped(runtime=Runtime(gone), worker="w@h:1")
    assert "could not record the stop of worker w@h:1" in caplog.text
