"""Owner-only files and folders for what holds patient data or secrets: the data directory,
the SQLite database, the store, the web app's key.

The mode given to ``mkdir`` or ``open`` is masked by the process umask, and a service started
with ``umask 000`` (or a container's default 022) would leave slides and the database
readable by every local user. So the mode is set explicitly after creation, which no umask
changes. Only what we create is changed: a folder the operator made (``/var/lib/unitumour``
from systemd's StateDirectory) keeps the mode the operator chose.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents, each one we create owner-only (0700)."""
    path = Path(path)
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another process, which sets its mode itself
        os.chmod(directory, DIR_MODE)
    return path


def private_file(path: Path) -> bool:
    """Create an empty file at ``path`` (and its folders) owner-only (0600) unless it exists;
    True when it was created here."""
    path = Path(path)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def sqlite_file_of(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory ones."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def private_sqlite_file(url: str) -> None:
    """Create a SQLite database's file owner-only before SQLite creates it with 0644 & umask
    (its -wal and -shm files take the database file's mode)."""
    path = sqlite_file_of(url)
    if path is not None:
        private_file(path)


__all__ = ["DIR_MODE", "FILE_MODE", "private_dir", "private_file", "private_sqlite_file"]
