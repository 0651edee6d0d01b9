"""The file store: atomic durable writes, digests, no overwrite, no escape from the root."""

import hashlib
import os
from pathlib import Path

import pytest

from unitumour_dicom.errors import IntegrityError, InvalidUIDError, StoreError, StoreFullError
from unitumour_dicom.store import FileStore

pytestmark = pytest.mark.unittest

STUDY, SERIES, SOP = "1.2.3.4", "1.2.3.5", "1.2.3.6"


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "store")


def test_put_bytes_is_durable_and_checksummed(store: FileStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    rel = store.instance_relpath(STUDY, SERIES, SOP, 1)
    obj = store.put_bytes(data, rel)
    assert obj.path == f"instances/{STUDY}/{SERIES}/{SOP}.v1.dcm"
    assert obj.sha256 == hashlib.sha256(data).hexdigest()
    assert obj.size_bytes == len(data)
    with store.open(rel) as fh:
        assert fh.read() == data
    store.verify(rel, obj.sha256)
    assert store.spool_leftovers() == []


def test_put_file_moves_a_spooled_file(store: FileStore) -> None:
    spooled = store.new_spool_path()
    spooled.write_bytes(b"DICM" * 100)
    obj = store.put_file(spooled, store.result_relpath(STUDY, SERIES, SOP))
    assert not spooled.exists()
    assert obj.sha256 == hashlib.sha256(b"DICM" * 100).hexdigest()


def test_never_overwrites(store: FileStore) -> None:
    rel = store.instance_relpath(STUDY, SERIES, SOP, 1)
    store.put_bytes(b"first", rel)
    with pytest.raises(StoreError, match="already exists; the store never overwrites"):
        store.put_bytes(b"second", rel)
    with store.open(rel) as fh:
        assert fh.read() == b"first"
    assert store.spool_leftovers() == []


def test_failed_stream_leaves_nothing(store: FileStore) -> None:
    def chunks():
        yield b"partial"
        raise ConnectionError("peer vanished")

    rel = store.instance_relpath(STUDY, SERIES, SOP, 1)
    with pytest.raises(ConnectionError):
        store.put_chunks(chunks(), rel)
    assert not store.exists(rel)
    assert store.spool_leftovers() == []


def test_corruption_is_detected(store: FileStore) -> None:
    rel = store.instance_relpath(STUDY, SERIES, SOP, 1)
    obj = store.put_bytes(b"original bytes", rel)
    store.abspath(rel).write_bytes(b"tampered bytes")
    with pytest.raises(IntegrityError, match="does not match recorded"):
        store.verify(rel, obj.sha256)


@pytest.mark.parametrize("uid", ["../../etc", "1." + "2" * 68, "1.2.3/..", "..", "/etc/passwd"])
def test_hostile_uids_never_become_paths(store: FileStore, uid: str) -> None:
    with pytest.raises(InvalidUIDError):
        store.instance_relpath(uid, SERIES, SOP, 1)
    with pytest.raises(InvalidUIDError):
        store.instance_relpath(STUDY, uid, SOP, 1)
    with pytest.raises(InvalidUIDError):
        store.result_relpath(STUDY, SERIES, uid)


def test_relative_paths_cannot_escape(store: FileStore) -> None:
    with pytest.raises(StoreError, match="outside the store"):
        store.abspath("../outside.dcm")
    with pytest.raises(StoreError, match="outside the store"):
        store.abspath("/etc/passwd")


def test_bad_versions_refused(store: FileStore) -> None:
    for version in (0, -1, "1"):
        with pytest.raises(StoreError, match="positive integer"):
            store.instance_relpath(STUDY, SERIES, SOP, version)  # type: ignore[arg-type]


def test_watermark(tmp_path: Path) -> None:
    assert FileStore(tmp_path / "a", min_free_percent=0).free_percent() > 0
    FileStore(tmp_path / "a", min_free_percent=0).check_space(1024)
    with pytest.raises(StoreFullError, match=r"below the 99\.9% watermark"):
        FileStore(tmp_path / "b", min_free_percent=99.9).check_space()


def test_quarantine_keeps_the_file(store: FileStore) -> None:
    spooled = store.new_spool_path()
    spooled.write_bytes(b"odd")
    rel = store.quarantine(spooled, "no rows/../x")
    assert rel.startswith("quarantine/") and ".." not in rel and "/x" not in rel[11:]
    with store.open(rel) as fh:
        assert fh.read() == b"odd"
