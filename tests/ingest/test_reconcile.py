"""Start-up reconcile after a crash, on real files: partial spools go, complete files without
rows are admitted or quarantined, open associations close, settled slides get their job."""

from __future__ import annotations

import shutil

import pytest
from pydicom import dcmread
from sqlalchemy import select

from unitumour_dicom.db import Association, AuditEvent, Instance, Job, Slide
from unitumour_dicom.db.types import utcnow
from unitumour_dicom.errors import StoreError
from unitumour_dicom.ingest import IngestEvent, ListenerService
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.store import sha256_file

from .conftest import listener_settings
from .helpers import wait_until

pytestmark = [pytest.mark.integration]


def test_reconcile_repairs_what_a_crash_left(runtime, start_listener, phantom):
    store = runtime.store
    spool = store.spool_dir / "listener"
    spool.mkdir(parents=True, exist_ok=True)
    (spool / "0123.part").write_bytes(b"\x00" * 1000)  # a transfer cut short

    source = phantom.level_paths[2][0]
    ds = dcmread(source, stop_before_pixels=True)
    orphan = store.instance_relpath(ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, 1)
    store.abspath(orphan).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, store.abspath(orphan))  # moved in, row never committed

    broken = store.instance_relpath("1.2.3", "1.2.3.4", "1.2.3.4.5", 1)
    store.abspath(broken).parent.mkdir(parents=True, exist_ok=True)
    store.abspath(broken).write_bytes(b"not DICOM at all")

    with runtime.session() as session:
        session.add(Association(calling_ae="SENDER", called_ae="UNITUMOUR", peer_host="127.0.0.1"))
        now = utcnow()
        slide = Slide(
            study_instance_uid="1.2.9",
            series_instance_uid="1.2.9.1",
            state="settled",
            settle_at=now,
            settled_at=now,
        )
        session.add(slide)

    listening = start_listener(runtime)
    report = listening.service.reconcile_report
    assert report.spool_removed == 1 and list(spool.glob("*.part")) == []
    assert report.associations_closed == 1
    assert report.recovered == [orphan]
    assert len(report.quarantined) == 1 and report.quarantined[0].startswith("quarantine/")
    assert store.exists(report.quarantined[0]) and not store.abspath(broken).exists()
    assert len(report.jobs_created) == 1

    with listening.runtime.session() as session:
        row = session.scalars(select(Instance)).one()
        codes = [e.event for e in session.scalars(select(AuditEvent))]
        first_association = session.get(Association, 1)
        job = session.scalars(select(Job)).one()
    assert row.path == orphan and row.association_id is None and row.version == 1
    assert row.sha256 == sha256_file(store.abspath(orphan))
    assert first_association.state == "aborted"
    assert job.slide_id == slide.id and job.state == "queued"
    for code in (
        IngestEvent.INSTANCE_RECOVERED,
        IngestEvent.INSTANCE_QUARANTINED,
        IngestEvent.ASSOCIATION_ABORTED,
        IngestEvent.LISTENER_RECONCILED,
        IngestEvent.JOB_CREATED,
    ):
        assert code in codes
    # the recovered instance's slide goes on as any other: it settles into a job
    wait_until(lambda: len(_jobs(listening)) == 2)


def _jobs(listening):
    with listening.runtime.session() as session:
        return list(session.scalars(select(Job)))


def test_one_listener_per_store(sqlite_runtime, start_listener):
    start_listener(sqlite_runtime)
    second = ListenerService(Runtime(listener_settings(sqlite_runtime.settings)))
    with pytest.raises(StoreError, match="another listener is using the store's spool"):
        second.start()
