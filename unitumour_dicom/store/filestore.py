"""The file store: durable, atomic, checksummed; every path is built from validated UIDs.

Layout under the root::

    instances/<study>/<series>/<sop>.v<version>.dcm   received instances
    results/<study>/<series>/<sop>.dcm                SEG instances we made
    quarantine/<name>                                 files kept but not admitted
    spool/                                            receives in progress (same filesystem)

A write goes to spool/, is fsynced, renamed into place and its directory fsynced, so that a
crash leaves either the whole object or nothing (and a spool leftover that reconcile removes).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import IntegrityError, StoreError, StoreFullError
from ..permissions import DIR_MODE, FILE_MODE, private_dir
from .uids import validate_uid

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class StoredObject:
    """Where an object lies (relative to the store root), its size and its sha256."""

    path: str
    size_bytes: int
    sha256: str


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs_durable(path: Path) -> None:
    """Create ``path`` and any missing parents, fsyncing each parent that gained an entry, so
    that a file made durable inside a new study or series folder is also reachable after a
    crash (fsync of a file's own directory does not persist that directory's own entry)."""
    missing: list[Path] = []
    probe = path
    while not probe.is_dir():
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        # made meanwhile by another thread: fsync anyway, its creator may not have yet
        try:
            directory.mkdir(mode=DIR_MODE)
        except FileExistsError:
            pass
        else:
            os.chmod(directory, DIR_MODE)  # owner-only whatever the umask
        fsync_dir(directory.parent)


class FileStore:
    """A directory of DICOM objects with atomic, durable writes."""

    def __init__(self, root: Path, *, min_free_percent: float = 0.0) -> None:
        self.root = Path(root).absolute()
        self.min_free_percent = min_free_percent
        # Patient data: every folder we create is owner-only (0700), whatever the umask.
        for sub in ("instances", "results", "quarantine", "spool"):
            private_dir(self.root / sub)

    # -- paths ---------------------------------------------------------------------------
    @property
    def spool_dir(self) -> Path:
        return self.root / "spool"

    def instance_relpath(self, study_uid: str, series_uid: str, sop_uid: str, version: int) -> str:
        if not isinstance(version, int) or version < 1:
            raise StoreError(f"instance version must be a positive integer, not {version!r}")
        parts = (
            validate_uid(study_uid, "Study Instance UID"),
            validate_uid(series_uid, "Series Instance UID"),
            f"{validate_uid(sop_uid, 'SOP Instance UID')}.v{version}.dcm",
        )
        return "/".join(("instances", *parts))

    def result_relpath(self, study_uid: str, series_uid: str, sop_uid: str) -> str:
        parts = (
            validate_uid(study_uid, "Study Instance UID"),
            validate_uid(series_uid, "Series Instance UID"),
            f"{validate_uid(sop_uid, 'SOP Instance UID')}.dcm",
        )
        return "/".join(("results", *parts))

    def abspath(self, relpath: str) -> Path:
        """The absolute path of a stored object; refuses anything that escapes the root."""
        path = (self.root / relpath).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"path {relpath!r} lies outside the store")
        return path

    # -- space ---------------------------------------------------------------------------
    def free_percent(self) -> float:
        usage = shutil.disk_usage(self.root)
        return 100.0 * usage.free / usage.total

    def check_space(self, incoming_bytes: int = 0) -> None:
        """Raise StoreFullError when free space is under the watermark (or can't hold more)."""
        usage = shutil.disk_usage(self.root)
        free_after = usage.free - incoming_bytes
        if 100.0 * free_after / usage.total < self.min_free_percent:
            raise StoreFullError(
                f"store {self.root}: {100.0 * usage.free / usage.total:.1f}% free, "
                f"below the {self.min_free_percent:.1f}% watermark"
            )

    # -- writing -------------------------------------------------------------------------
    def new_spool_path(self, suffix: str = ".part") -> Path:
        return self.spool_dir / f"{uuid.uuid4().hex}{suffix}"

    def put_file(
        self,
        source: Path,
        relpath: str,
        *,
        sha256: str | None = None,
        synced: bool = False,
        sync_dir: bool = True,
    ) -> StoredObject:
        """Move a file (already on the store's filesystem, e.g. in spool/) into place durably.

        The file is fsynced before the link (``synced=True``: the caller has done it) and the
        destination directory after it (``sync_dir=False``: the caller will, before it relies
        on the object, e.g. once for several objects). An existing object at ``relpath`` is never
        overwritten: versions get new paths. The spool directory is not fsynced: a crash can
        at worst leave the old spool name behind as a second link to a stored file, which the
        start-up sweep of spool leftovers removes.
        """
        dest = self.abspath(relpath)
        if dest.exists():
            raise StoreError(f"{relpath} already exists; the store never overwrites")
        digest = sha256 or sha256_file(source)
        size = source.stat().st_size
        if not synced:
            fd = os.open(source, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.chmod(source, FILE_MODE)  # owner-only, however its writer created it
        make_dirs_durable(dest.parent)
        try:
            os.link(source, dest)  # fails if dest appeared meanwhile: no silent overwrite
        except FileExistsError as exc:
            raise StoreError(f"{relpath} already exists; the store never overwrites") from exc
        except OSError:
            os.replace(source, dest)  # filesystems without hard links
        else:
            os.unlink(source)
        if sync_dir:
            fsync_dir(dest.parent)
        return StoredObject(path=relpath, size_bytes=size, sha256=digest)

    def put_bytes(self, data: bytes, relpath: str) -> StoredObject:
        return self.put_chunks([data], relpath)

    def put_chunks(self, chunks: Iterable[bytes], relpath: str) -> StoredObject:
        """Write a stream of bytes as one object, hashing on the way."""
        digest = hashlib.sha256()
        with self.spool_writer() as (tmp, fh):
            for chunk in chunks:
                digest.update(chunk)
                fh.write(chunk)
        try:
            return self.put_file(tmp, relpath, sha256=digest.hexdigest())
        finally:
            tmp.unlink(missing_ok=True)  # gone already unless put_file refused it

    @contextmanager
    def spool_writer(self) -> Iterator[tuple[Path, BinaryIO]]:
        """A spool file to write into; removed if the block fails, left for put_file if not."""
        fd, name = tempfile.mkstemp(dir=self.spool_dir, suffix=".part")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                yield path, fh
                fh.flush()
                os.fsync(fh.fileno())
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    def quarantine(self, source: Path, reason_tag: str) -> str:
        """Keep a file we will not admit, for a human to look at; returns its relative path."""
        safe = re.sub(r"[^A-Za-z0-9_-]", "_", reason_tag)[:40]
        relpath = f"quarantine/{uuid.uuid4().hex}-{safe}.dcm"
        self.put_file(source, relpath)
        return relpath

    # -- reading -------------------------------------------------------------------------
    def open(self, relpath: str) -> BinaryIO:
        return open(self.abspath(relpath), "rb")

    def exists(self, relpath: str) -> bool:
        return self.abspath(relpath).is_file()

    def verify(self, relpath: str, sha256: str) -> None:
        """Raise IntegrityError if the object's bytes no longer match the recorded digest."""
        actual = sha256_file(self.abspath(relpath))
        if actual != sha256:
            raise IntegrityError(f"{relpath}: sha256 {actual} does not match recorded {sha256}")

    def remove(self, relpath: str) -> None:
        path = self.abspath(relpath)
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)

    def spool_leftovers(self) -> list[Path]:
        return sorted(p for p in self.spool_dir.iterdir() if p.is_file())

    def iter_instance_files(self) -> Iterator[str]:
        base = self.root / "instances"
        for path in sorted(base.rglob("*.dcm")):
            yield path.relative_to(self.root).as_posix()
