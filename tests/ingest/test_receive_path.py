"""The one receive path: every intake path's instances are recorded with the path and the
sender, refusals carry the conformance statement's statuses, and nothing refused is kept."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from sqlalchemy import select

from unitumour_dicom.db import AuditEvent, Instance, IntakePath
from unitumour_dicom.ingest import IngestEvent, StoreStatus
from unitumour_dicom.ingest.receive import (
    IntakeInfo,
    Receiver,
    receive_instance,
    spool_file,
    spool_stream,
)

from .helpers import associations_closed, storescu, uid_of


def _events(runtime, event: str) -> list[AuditEvent]:
    with runtime.session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.event == event)))


def _spool_is_empty(runtime) -> bool:
    return not [p for p in runtime.store.spool_dir.rglob("*") if p.is_file() and p.name != ".lock"]


@pytest.mark.integration
def test_c_store_instances_are_recorded_with_their_path_and_sender(listening, phantom):
    files = phantom.level_paths[2]
    result = storescu(listening.host, listening.port, files)
    assert result.returncode == 0, result.stderr
    (association,) = associations_closed(listening)
    with listening.runtime.session() as session:
        rows = list(session.scalars(select(Instance)))
    assert {(r.intake, r.sender, r.association_id) for r in rows} == {
        ("c-store", "SENDER", association.id)
    }
    stored = _events(listening.runtime, IngestEvent.INSTANCE_STORED)
    assert len(stored) == len(files)
    for event in stored:
        assert event.details["intake"] == "c-store"
        assert event.details["sender"] == "SENDER"
        assert event.details["peer"].startswith(f"{association.peer_host}:")


def test_a_file_from_a_folder_is_copied_admitted_and_left_in_place(sqlite_runtime, phantom):
    source = phantom.level_paths[2][0]
    before = source.read_bytes()
    receiver = Receiver(sqlite_runtime)
    intake = IntakeInfo(IntakePath.PROCESS, sender="LOCAL", peer=str(source.parent))
    outcome = receive_instance(source, intake=intake, receiver=receiver)
    assert outcome.ok and outcome.status == StoreStatus.SUCCESS
    assert outcome.sop_instance_uid == str(uid_of(source))
    assert outcome.instance_id is not None and outcome.slide_id is not None
    assert source.read_bytes() == before
    with sqlite_runtime.session() as session:
        row = session.get(Instance, outcome.instance_id)
    assert row is not None and (row.intake, row.sender) == ("process", "LOCAL")
    assert row.sha256 == hashlib.sha256(before).hexdigest()
    assert sqlite_runtime.store.abspath(row.path).read_bytes() == before
    assert _spool_is_empty(sqlite_runtime)
    again = receiver.receive(source, intake)  # the same bytes again: success, nothing new
    assert again.ok and again.duplicate and again.instance_id == outcome.instance_id
    (duplicate,) = _events(sqlite_runtime, IngestEvent.INSTANCE_DUPLICATE)
    assert duplicate.details["intake"] == "process"
    assert _spool_is_empty(sqlite_runtime)


def test_a_truncated_file_is_refused_audited_with_its_path_and_not_kept(
    sqlite_runtime, phantom, tmp_path
):
    truncated = tmp_path / "cut.dcm"
    truncated.write_bytes(phantom.level_paths[2][0].read_bytes()[:-1000])  # in Pixel Data
    receiver = Receiver(sqlite_runtime)
    outcome = receiver.receive(
        truncated, IntakeInfo(IntakePath.WATCHED_FOLDER, sender="scanner-share", peer="/in")
    )
    assert not outcome.ok and outcome.status == StoreStatus.CANNOT_UNDERSTAND
    (refused,) = _events(sqlite_runtime, IngestEvent.INSTANCE_REFUSED)
    assert refused.details["intake"] == "watched-folder"
    assert refused.details["sender"] == "scanner-share"
    assert refused.details["status"] == StoreStatus.CANNOT_UNDERSTAND
    assert refused.actor == "scanner-share"
    with sqlite_runtime.session() as session:
        assert session.scalars(select(Instance)).all() == []
    assert _spool_is_empty(sqlite_runtime)
    assert truncated.exists()  # the caller's file is the caller's


def test_a_stream_over_the_size_limit_is_read_to_its_end_and_refused(sqlite_runtime, phantom):
    data = phantom.level_paths[2][0].read_bytes()
    stream = io.BytesIO(data)
    received = spool_stream(sqlite_runtime.store, stream, max_bytes=len(data) - 1)
    assert stream.tell() == len(data)  # everything read, so the request can be answered
    assert received.refusal is not None and "exceeds the limit" in received.refusal
    assert received.path.stat().st_size == 0
    outcome = Receiver(sqlite_runtime).receive(
        received, IntakeInfo(IntakePath.STOW_RS, sender="ada", peer="10.0.0.5")
    )
    assert outcome.status == StoreStatus.OUT_OF_RESOURCES
    (refused,) = _events(sqlite_runtime, IngestEvent.INSTANCE_REFUSED)
    assert (refused.details["intake"], refused.details["sender"]) == ("stow-rs", "ada")
    assert not received.path.exists()


def test_a_stream_is_admitted_with_its_declared_uids_checked(sqlite_runtime, phantom):
    path: Path = phantom.level_paths[2][0]
    receiver = Receiver(sqlite_runtime)
    wrong = receiver.receive(
        spool_file(sqlite_runtime.store, path, max_bytes=1 << 30),
        IntakeInfo(IntakePath.PULL, sender="PACS", sop_instance_uid="1.2.3.4"),
    )
    assert wrong.status == StoreStatus.CANNOT_UNDERSTAND  # not the instance asked for
    chunks = [path.read_bytes()[i : i + 4096] for i in range(0, path.stat().st_size, 4096)]
    right = receiver.receive(
        spool_stream(sqlite_runtime.store, chunks, max_bytes=1 << 30),
        IntakeInfo(IntakePath.PULL, sender="PACS", sop_instance_uid=str(uid_of(path))),
    )
    assert right.ok and not right.duplicate
    with sqlite_runtime.session() as session:
        row = session.get(Instance, right.instance_id)
    assert row is not None and (row.intake, row.sender) == ("pull", "PACS")
    assert _spool_is_empty(sqlite_runtime)
