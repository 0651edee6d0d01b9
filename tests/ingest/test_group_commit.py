"""Group commit: admissions arriving together share directory fsyncs and one commit, each
caller returns only once its own rows are committed, and one failure is nobody else's."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from unitumour_dicom.db import AuditEvent, record_event
from unitumour_dicom.errors import StoreError
from unitumour_dicom.ingest.groupcommit import GroupCommit
from unitumour_dicom.store.filestore import fsync_dir


def _audit_count(runtime) -> int:
    with runtime.session() as session:
        return session.scalar(select(func.count()).select_from(AuditEvent)) or 0


def _work(name: str, seen: list[int] | None = None):
    def work(session: Session) -> str:
        row = record_event(session=session, event="test.group", message=name)
        session.flush()
        if seen is not None:
            seen.append(row.id)
        return name

    return work


def test_a_thread_alone_commits_its_own_work_at_once(sqlite_runtime, tmp_path):
    synced: list[Path] = []
    group = GroupCommit(sqlite_runtime.session, fsync_directory=synced.append)
    assert group.run(_work("one"), sync_dirs=[tmp_path]) == "one"
    assert synced == [tmp_path] and group.batches == 1 and group.admissions == 1
    assert _audit_count(sqlite_runtime) == 1


def test_concurrent_admissions_share_fsyncs_and_commits(sqlite_runtime, tmp_path):
    synced: list[Path] = []
    directory = tmp_path / "series"
    directory.mkdir()

    def slow_fsync(path: Path) -> None:  # a real fsync, slowed so that others queue meanwhile
        time.sleep(0.05)
        fsync_dir(path)
        synced.append(path)

    group = GroupCommit(sqlite_runtime.session, fsync_directory=slow_fsync)
    results: dict[int, str] = {}
    committed_before_return: list[bool] = []

    def admit(i: int) -> None:
        value = group.run(_work(f"n{i}"), sync_dirs=[directory])
        with sqlite_runtime.session() as session:  # visible to everyone once run returns
            committed_before_return.append(
                session.scalar(select(func.count()).where(AuditEvent.message == value)) == 1
            )
        results[i] = value

    threads = [threading.Thread(target=admit, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {i: f"n{i}" for i in range(12)}
    assert all(committed_before_return) and len(committed_before_return) == 12
    assert _audit_count(sqlite_runtime) == 12
    assert group.admissions == 12
    assert group.batches < 12  # some shared a commit
    assert len(synced) == group.batches  # one fsync of the directory per batch


def test_a_failing_admission_in_a_batch_fails_alone(sqlite_runtime, tmp_path):
    gate = threading.Event()

    def held_fsync(path: Path) -> None:
        gate.wait(10)  # the first batch holds the lead until the others have queued

    group = GroupCommit(sqlite_runtime.session, fsync_directory=held_fsync)

    def broken(session: Session) -> str:
        record_event(session=session, event="test.group", message="broken")
        raise ValueError("a defect in one admission")

    outcomes: dict[str, object] = {}

    def run(name: str, work) -> None:  # type: ignore[no-untyped-def]
        try:
            outcomes[name] = group.run(work, sync_dirs=[tmp_path])
        except Exception as exc:
            outcomes[name] = exc

    first = threading.Thread(target=run, args=("first", _work("first")))
    first.start()
    while not group._leading:
        time.sleep(0.001)
    others = [
        threading.Thread(target=run, args=("good1", _work("good1"))),
        threading.Thread(target=run, args=("broken", broken)),
        threading.Thread(target=run, args=("good2", _work("good2"))),
    ]
    for thread in others:
        thread.start()
    while len(group._queue) < 3:
        time.sleep(0.001)
    gate.set()
    for thread in [first, *others]:
        thread.join(30)
    assert outcomes["first"] == "first"
    assert outcomes["good1"] == "good1" and outcomes["good2"] == "good2"
    assert isinstance(outcomes["broken"], ValueError)
    with sqlite_runtime.session() as session:
        messages = set(session.scalars(select(AuditEvent.message)))
    assert messages == {"first", "good1", "good2"}


def test_a_failed_directory_fsync_fails_only_the_admissions_in_it(sqlite_runtime, tmp_path):
    bad, good = tmp_path / "bad", tmp_path / "good"

    def fsync(path: Path) -> None:
        if path == bad:
            raise OSError(5, "Input/output error")

    group = GroupCommit(sqlite_runtime.session, fsync_directory=fsync)
    with pytest.raises(StoreError, match="cannot fsync"):
        group.run(_work("lost"), sync_dirs=[bad])
    assert group.run(_work("kept"), sync_dirs=[good]) == "kept"
    with sqlite_runtime.session() as session:
        assert list(session.scalars(select(AuditEvent.message))) == ["kept"]
