"""Spool files and admission without a network: the fsync that overlaps validation (done by
whichever thread gets there first), and what happens when it fails. (The listener tests cover
the same code through real associations.)"""

from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path

import pydicom
import pytest
from sqlalchemy import func, select

from unitumour_dicom.db import Instance
from unitumour_dicom.errors import StoreError
from unitumour_dicom.ingest import spool as spool_module
from unitumour_dicom.ingest.admit import Admitter, ReceivedFile, Sender
from unitumour_dicom.ingest.contexts import storage_sop_classes
from unitumour_dicom.ingest.header import read_instance_header
from unitumour_dicom.ingest.spool import SpoolFile
from unitumour_dicom.ingest.validate import InstanceLimits, validate_instance
from unitumour_dicom.runtime import Runtime
from unitumour_dicom.store import FileStore
from unitumour_dicom.store.filestore import make_dirs_durable


def _spool_copy(store: FileStore, source: Path, chunk: int = 65536) -> SpoolFile:
    """Write ``source`` into a spool file the way pynetdicom does: chunk by chunk."""
    spool = SpoolFile(store.new_spool_path(), max_bytes=1 << 40, store=store)
    data = source.read_bytes()
    for start in range(0, len(data), chunk):
        spool.write(memoryview(data)[start : start + chunk])
    return spool


def _summary(runtime: Runtime, path: Path, scratch: Path):
    header = read_instance_header(path, scratch_dir=scratch, max_inflated_bytes=1 << 40)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    return validate_instance(
        header,
        command_sop_class_uid=ds.SOPClassUID,
        command_sop_instance_uid=ds.SOPInstanceUID,
        allowed_sop_classes=frozenset(storage_sop_classes([])),
        limits=InstanceLimits.from_settings(runtime.settings.listener),
    )


def test_a_spool_file_synced_by_another_thread_is_complete_and_closed(sqlite_runtime, phantom):
    source = phantom.instance_paths[0]
    spool = _spool_copy(sqlite_runtime.store, source)
    reader = threading.Thread(target=spool.sync_now)  # as the association's reader does
    reader.start()
    spool.wait_synced()
    reader.join()
    spool.wait_synced()  # again: nothing more to do
    assert spool.closed
    assert spool.path.read_bytes() == source.read_bytes()
    assert spool.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    spool.discard()
    assert not spool.path.exists()


def test_a_failed_fsync_refuses_the_admission_and_keeps_nothing(
    sqlite_runtime, phantom, tmp_path, monkeypatch
):
    source = phantom.instance_paths[0]
    summary = _summary(sqlite_runtime, source, tmp_path)
    spool = _spool_copy(sqlite_runtime.store, source)

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(spool_module.os, "fsync", failing_fsync)
    received = ReceivedFile(spool.path, spool.sha256, spool.received_bytes, spool.wait_synced)
    with pytest.raises(StoreError, match="cannot fsync"):
        Admitter(sqlite_runtime).admit(received, summary, Sender(None, "SENDER", 1.0))
    spool.discard()
    with sqlite_runtime.session() as session:
        assert session.scalar(select(func.count()).select_from(Instance)) == 0
    assert not list((sqlite_runtime.store.root / "instances").rglob("*.dcm"))
    assert not spool.path.exists()


def test_admission_links_the_file_only_after_its_fsync(sqlite_runtime, phantom, tmp_path):
    source = phantom.instance_paths[0]
    summary = _summary(sqlite_runtime, source, tmp_path)
    spool = _spool_copy(sqlite_runtime.store, source)
    stored_before_sync: list[int] = []

    def wait_durable() -> None:
        # what admission has placed in the store by the time it asks for durability
        stored_before_sync.append(len(list(sqlite_runtime.store.root.rglob("*.v1.dcm"))))
        spool.wait_synced()

    received = ReceivedFile(spool.path, spool.sha256, spool.received_bytes, wait_durable)
    admission = Admitter(sqlite_runtime).admit(received, summary, Sender(None, "SENDER", 1.0))
    assert stored_before_sync == [0]
    stored = sqlite_runtime.store.abspath(admission.path)
    assert stored.read_bytes() == source.read_bytes()
    assert not spool.path.exists()


def test_new_study_and_series_folders_are_created_under_existing_ones(tmp_path):
    root = tmp_path / "instances"
    root.mkdir()
    target = root / "1.2.3" / "1.2.3.4"
    make_dirs_durable(target)
    make_dirs_durable(target)  # already there: nothing to do, no error
    assert target.is_dir()
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == [
        "1.2.3",
        "1.2.3/1.2.3.4",
    ]
    assert os.access(target, os.W_OK)


def test_a_refused_spool_is_closed_without_a_sync(sqlite_runtime, phantom, monkeypatch):
    spool = _spool_copy(sqlite_runtime.store, phantom.instance_paths[0])
    calls: list[int] = []
    monkeypatch.setattr(spool_module.os, "fsync", calls.append)
    spool.discard()  # refused: nothing to make durable
    spool.sync_now()  # a reader arriving late does nothing either
    assert calls == [] and spool.closed and not spool.path.exists()
