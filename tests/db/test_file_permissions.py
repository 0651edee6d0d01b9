"""Patient data and secrets are owner-only on disk whatever the umask: the data directory,
the SQLite database (and its WAL files), the store's folders and files, the web key."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from unitumour_dicom.config import load_settings
from unitumour_dicom.db import dispose_engines, migrate
from unitumour_dicom.runtime import Runtime

pytestmark = pytest.mark.integration

UID = "1.2.826.0.1.3680043.8.498"


@pytest.fixture
def umask_000() -> Iterator[None]:
    """The most permissive umask a service could be started with."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_database_store_and_key_are_owner_only_under_umask_000(
    tmp_path: Path, umask_000: None
) -> None:
    from unitumour_services.web.security import SECRET_FILE, load_secret_key

    data_dir = tmp_path / "new" / "data"
    settings = load_settings(data_dir=data_dir)
    runtime = Runtime(settings)
    try:
        with runtime.session() as db:  # a process's first connection makes the file
            db.connection()
        migrate.upgrade(settings.database_url)
        database = data_dir / "unitumour.db"
        with runtime.session() as db:
            db.execute(text("CREATE TABLE probe (x INTEGER)"))  # a write: the WAL exists now
            for suffix in ("-wal", "-shm"):
                wal = database.with_name(database.name + suffix)
                assert _mode(wal) == 0o600, wal
        stored = runtime.store.put_bytes(
            b"DICM", runtime.store.instance_relpath(f"{UID}.1", f"{UID}.2", f"{UID}.3", 1)
        )
        load_secret_key(settings)
    finally:
        dispose_engines()
    assert _mode(data_dir) == 0o700
    assert _mode(tmp_path / "new") == 0o700  # every folder we made
    assert _mode(database) == 0o600
    store = settings.store_root
    folders = [store, *(p for p in store.rglob("*") if p.is_dir())]
    assert len(folders) >= 7  # root, its four parts, study and series folders
    assert {p: _mode(p) for p in folders} == dict.fromkeys(folders, 0o700)
    assert _mode(runtime.store.abspath(stored.path)) == 0o600
    assert _mode(data_dir / SECRET_FILE) == 0o600


def test_a_folder_the_operator_made_keeps_its_mode(tmp_path: Path, umask_000: None) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o750)
    os.chmod(data_dir, 0o750)
    runtime = Runtime(load_settings(data_dir=data_dir))
    try:
        with runtime.session() as db:
            db.connection()
    finally:
        dispose_engines()
    assert _mode(data_dir) == 0o750
    assert _mode(data_dir / "unitumour.db") == 0o600
