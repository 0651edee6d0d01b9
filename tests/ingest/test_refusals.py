"""Bad input over the network: the right status, an audit row, nothing kept, and the listener
keeps serving. Peers that abort or vanish mid-instance leave nothing admitted."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import CTImageStorage
from pynetdicom import AE
from sqlalchemy import create_engine, select, text

from unitumour_dicom.db import Association, AuditEvent, Instance
from unitumour_dicom.ingest import IngestEvent, StoreStatus
from unitumour_dicom.ingest.contexts import WSI_SOP_CLASS

from .helpers import (
    STORESCU,
    Listening,
    associations_closed,
    echo,
    native_instance,
    pynetdicom_send,
    rewrite,
    uid_of,
    wait_until,
)

pytestmark = [pytest.mark.integration]


def refusals(listening: Listening) -> list[AuditEvent]:
    with listening.runtime.session() as session:
        return list(
            session.scalars(
                select(AuditEvent)
                .where(AuditEvent.event == IngestEvent.INSTANCE_REFUSED)
                .order_by(AuditEvent.id)
            )
        )


def instance_uids(listening: Listening) -> set[str]:
    with listening.runtime.session() as session:
        return set(session.scalars(select(Instance.sop_instance_uid)))


def spool_files(listening: Listening) -> list[Path]:
    return [
        p for p in listening.runtime.store.spool_dir.rglob("*") if p.is_file() and p.name != ".lock"
    ]


def claims_to_be_wsi(path: Path) -> Path:
    """Give a file VL WSI in its meta group (so the C-STORE says WSI) whatever its data set says."""
    ds = dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
    ds.save_as(path, enforce_file_format=False)
    return path


def assert_still_serving(listening: Listening, path: Path) -> None:
    assert echo(listening.host, listening.port) == 0
    assert pynetdicom_send(listening.host, listening.port, [path]) == [0]
    assert str(uid_of(path)) in instance_uids(listening)


def test_each_bad_instance_gets_its_status_and_audit_row(listening, phantom, tmp_path):
    base = phantom.level_paths[0][0]
    truncated = tmp_path / "truncated.dcm"
    truncated.write_bytes(base.read_bytes()[: int(base.stat().st_size * 0.7)])
    cases = [
        (truncated, StoreStatus.CANNOT_UNDERSTAND, "truncated"),
        (
            rewrite(
                base, tmp_path / "no_columns.dcm", lambda ds: delattr(ds, "TotalPixelMatrixColumns")
            ),
            StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            "TotalPixelMatrixColumns is missing",
        ),
        (
            claims_to_be_wsi(
                rewrite(
                    base,
                    tmp_path / "not_wsi.dcm",
                    lambda ds: setattr(ds, "SOPClassUID", CTImageStorage),
                )
            ),
            StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            "does not match the request",
        ),
        (
            rewrite(
                base,
                tmp_path / "hostile.dcm",
                lambda ds: setattr(ds, "StudyInstanceUID", "1.2/../../x"),
            ),
            StoreStatus.CANNOT_UNDERSTAND,
            "StudyInstanceUID",
        ),
        (
            rewrite(
                base,
                tmp_path / "huge.dcm",
                lambda ds: setattr(ds, "TotalPixelMatrixRows", 3_000_000_000),
            ),
            StoreStatus.OUT_OF_RESOURCES,
            "exceeds the limit",
        ),
        (
            rewrite(base, tmp_path / "no_image_type.dcm", lambda ds: delattr(ds, "ImageType")),
            StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS,
            "ImageType is missing",
        ),
    ]
    statuses = pynetdicom_send(listening.host, listening.port, [case[0] for case in cases])
    assert statuses == [int(case[1]) for case in cases]
    audits = refusals(listening)
    assert len(audits) == len(cases)
    for audit, (path, status, words) in zip(audits, cases, strict=True):
        assert audit.details["status"] == status, path.name
        assert words in audit.message, (path.name, audit.message)
        assert audit.association_id is not None
    assert instance_uids(listening) == set()
    assert list(listening.runtime.store.iter_instance_files()) == []
    assert spool_files(listening) == []
    (association,) = associations_closed(listening)
    assert association.n_failures == len(cases) and association.n_instances == 0
    assert_still_serving(listening, base)


def test_a_sop_class_not_allowed_is_not_negotiated_unless_the_settings_allow_it(
    sqlite_runtime, start_listener, phantom, tmp_path
):
    ct = rewrite(phantom.level_paths[2][0], tmp_path / "ct.dcm", lambda ds: None)
    # make the file a CT image in its meta and data set: another storage class
    ds = dcmread(ct)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
    ds.save_as(ct, enforce_file_format=True)

    strict = start_listener(sqlite_runtime)
    ae = AE(ae_title="PYSENDER")
    ae.add_requested_context(CTImageStorage, str(ds.file_meta.TransferSyntaxUID))
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate(strict.host, strict.port, ae_title="UNITUMOUR")
    assert assoc.is_established
    assert [cx.abstract_syntax for cx in assoc.accepted_contexts] == ["1.2.840.10008.1.1"]
    assert [cx.abstract_syntax for cx in assoc.rejected_contexts] == [CTImageStorage]
    assoc.release()
    strict.service.stop(grace_s=1)

    open_to_ct = start_listener(sqlite_runtime, extra_sop_classes=[CTImageStorage])
    assert pynetdicom_send(open_to_ct.host, open_to_ct.port, [ct]) == [0]
    with open_to_ct.runtime.session() as session:
        row = session.scalars(select(Instance)).one()
        audit = session.scalars(
            select(AuditEvent).where(AuditEvent.event == IngestEvent.INSTANCE_STORED)
        ).one()
    assert row.sop_class_uid == CTImageStorage and row.slide_id is None
    assert "not a WSI" in audit.message


def test_an_instance_over_the_size_limit_is_refused_without_filling_the_disk(
    sqlite_runtime, start_listener, phantom
):
    base = phantom.level_paths[0][0]
    small = start_listener(sqlite_runtime, max_instance_bytes=base.stat().st_size // 2)
    assert pynetdicom_send(small.host, small.port, [base]) == [StoreStatus.OUT_OF_RESOURCES]
    (audit,) = refusals(small)
    assert "exceeds the limit" in audit.message
    assert spool_files(small) == [] and instance_uids(small) == set()


def test_below_the_disk_watermark_everything_is_refused(sqlite_runtime, start_listener, phantom):
    full = start_listener(sqlite_runtime, store={"min_free_percent": 99.999})
    path = phantom.level_paths[2][0]
    assert pynetdicom_send(full.host, full.port, [path]) == [StoreStatus.OUT_OF_RESOURCES]
    (audit,) = refusals(full)
    assert "watermark" in audit.message
    assert spool_files(full) == [] and instance_uids(full) == set()


def test_database_down_mid_association_is_out_of_resources_then_recovers(
    runtime, start_listener, phantom
):
    url = runtime.settings.database_url
    if url.startswith("sqlite"):
        pytest.skip("taking the database away mid-association needs a database server")
    listening = start_listener(runtime)
    name = url.rsplit("/", 1)[1]
    admin = create_engine(url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")

    files = [phantom.level_paths[1][0], phantom.level_paths[2][0]]
    ae = AE(ae_title="PYSENDER")
    for path in files:
        ae.add_requested_context(str(phantom_sop_class(path)), str(ts_of(path)))
    assoc = ae.associate(listening.host, listening.port, ae_title="UNITUMOUR")
    assert assoc.is_established
    try:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
                {"n": name},
            )
        status = assoc.send_c_store(files[0])
        assert status.Status == StoreStatus.OUT_OF_RESOURCES
        # a new association cannot be recorded: rejected, transiently
        ae2 = AE(ae_title="PYSENDER")
        ae2.add_requested_context("1.2.840.10008.1.1")
        refused = ae2.associate(listening.host, listening.port, ae_title="UNITUMOUR")
        assert refused.is_rejected
        assert refused.acceptor.primitive.result == 0x02  # rejected-transient
        assert refused.acceptor.primitive.diagnostic == 0x01  # temporary congestion
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        admin.dispose()
    status = assoc.send_c_store(files[1])
    assert status.Status == 0
    assoc.release()
    assert instance_uids(listening) == {str(uid_of(files[1]))}
    assert spool_files(listening) == []
    assert list(listening.runtime.store.iter_instance_files()) != []
    assert len(list(listening.runtime.store.iter_instance_files())) == 1


def phantom_sop_class(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).file_meta.MediaStorageSOPClassUID)


def ts_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)


@pytest.fixture(scope="module")
def big_instance(phantom, tmp_path_factory) -> Path:
    """A 50 MB native instance: long enough on loopback to be interrupted mid-transfer."""
    return native_instance(
        phantom.level_paths[0][0], tmp_path_factory.mktemp("big") / "big.dcm", tiles=16
    )


def _wait_for_partial_spool(listening: Listening, min_bytes: int = 1 << 20) -> None:
    def partial() -> bool:
        return any(p.stat().st_size >= min_bytes for p in spool_files(listening) if p.exists())

    wait_until(partial, timeout=30, interval=0.002)


# The sender here is pynetdicom, aborted from another thread while its own thread still sends
# P-DATA: that thread dies of InvalidEventError (Evt9 in Sta13) on the sender's side, as meant.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_sender_that_aborts_mid_instance_leaves_nothing_admitted(
    listening, phantom, big_instance
):
    from pynetdicom import _config as pynetdicom_config

    ae = AE(ae_title="PYSENDER")
    ae.dimse_timeout = 2  # the aborted send waits for no response
    ae.add_requested_context(phantom_sop_class(big_instance), ts_of(big_instance))
    assoc = ae.associate(listening.host, listening.port, ae_title="UNITUMOUR")
    assert assoc.is_established
    pynetdicom_config.STORE_SEND_CHUNKED_DATASET = True
    outcome: list[object] = []
    sender = threading.Thread(target=lambda: outcome.append(assoc.send_c_store(big_instance)))
    try:
        sender.start()
        _wait_for_partial_spool(listening)
        assoc.abort()
        sender.join(30)
    finally:
        pynetdicom_config.STORE_SEND_CHUNKED_DATASET = False
    wait_until(lambda: spool_files(listening) == [])
    with listening.runtime.session() as session:
        events = wait_until(
            lambda: session.scalars(
                select(AuditEvent).where(AuditEvent.event == IngestEvent.INSTANCE_INCOMPLETE)
            ).all()
        )
    (association,) = associations_closed(listening)
    assert str(uid_of(big_instance)) in events[0].message
    assert association.state == "aborted" and association.n_instances == 0
    assert instance_uids(listening) == set()
    assert list(listening.runtime.store.iter_instance_files()) == []
    assert_still_serving(listening, phantom.level_paths[2][0])


@pytest.mark.skipif(STORESCU is None, reason="DCMTK storescu is not installed")
def test_a_sender_that_vanishes_mid_instance_leaves_nothing_admitted(
    listening, phantom, big_instance
):
    proc = subprocess.Popen(
        [
            STORESCU,
            "-aet",
            "SENDER",
            "-aec",
            "UNITUMOUR",
            "-R",
            "-xe",
            listening.host,
            str(listening.port),
            str(big_instance),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_partial_spool(listening)
    finally:
        proc.kill()
        proc.wait(10)
    wait_until(lambda: spool_files(listening) == [])
    with listening.runtime.session() as session:
        wait_until(
            lambda: session.scalars(
                select(AuditEvent).where(AuditEvent.event == IngestEvent.INSTANCE_INCOMPLETE)
            ).all()
        )
    assert instance_uids(listening) == set()
    assert_still_serving(listening, phantom.level_paths[2][0])


def test_associations_beyond_the_limit_are_rejected_and_audited(sqlite_runtime, start_listener):
    listening = start_listener(sqlite_runtime, max_associations=1)
    ae = AE(ae_title="PYSENDER")
    ae.add_requested_context("1.2.840.10008.1.1")
    first = ae.associate(listening.host, listening.port, ae_title="UNITUMOUR")
    assert first.is_established
    second = ae.associate(listening.host, listening.port, ae_title="UNITUMOUR")
    assert second.is_rejected
    first.release()
    with listening.runtime.session() as session:
        rejected = wait_until(
            lambda: session.scalars(
                select(Association).where(Association.state == "rejected")
            ).all()
        )
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.event == IngestEvent.ASSOCIATION_REJECTED)
        ).one()
    assert "local-limit-exceeded" in rejected[0].reject_reason
    assert event.association_id == rejected[0].id
    time.sleep(0.2)
    assert echo(listening.host, listening.port, aet="PYSENDER") == 0
