"""Streaming receive: where pynetdicom writes each incoming data set, chunk by chunk.

With ``STORE_RECV_CHUNKED_DATASET`` pynetdicom writes a C-STORE data set to a temporary file
as its P-DATA fragments arrive (the File Meta Information it builds first, then the data set
bytes exactly as the peer sent them). pynetdicom takes that file from ``NamedTemporaryFile`` in
the system temporary directory; we substitute a :class:`SpoolFile` in the store's own spool
directory, so that admission is a rename on the same filesystem and never a copy, and so that
each chunk is hashed as it is written (no second pass over a multi-gigabyte file) and counted
against the size limit and the disk watermark while the transfer is still running. A receive
that goes over a limit keeps reading (the peer must be answered) but stops writing.

The substitution is per application entity: a data set received by any other pynetdicom AE in
the process gets the ordinary temporary file.
"""

from __future__ import annotations

import ctypes
import fcntl
import hashlib
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from tempfile import NamedTemporaryFile
from typing import IO, Any

from pynetdicom import _config as pynetdicom_config
from pynetdicom import dimse_messages

from ..errors import StoreError, StoreFullError
from ..store import FileStore

log = logging.getLogger(__name__)

#: Re-check free disk space after this many bytes of one transfer.
SPACE_CHECK_BYTES = 64 * 1024 * 1024
#: Start writeback to disk after this many bytes written (see :func:`start_writeback`).
WRITEBACK_BYTES = 8 * 1024 * 1024
SPOOL_SUBDIR = "listener"


class SpoolFile:
    """A file-like that pynetdicom writes one received data set into.

    Only ``write``, ``file.flush``, ``name`` and ``close`` are used by pynetdicom. Each chunk
    is written and hashed as it arrives, in the association's reader thread (a writer thread
    of its own was measured slower: the hand-over per 128 KiB chunk costs more than it saves
    on a 2-core machine). Every few megabytes the kernel is asked to start writeback, so that
    the fsync before admission finds little left to flush.

    Once the data set is complete, the association's reader thread, which has nothing else to
    do until the sender gets its answer, calls :meth:`sync_now` (fsync, close) while the
    association thread reads and validates the header and looks up earlier versions; admission
    waits for it (:meth:`wait_synced`) before the file is linked into the store, and does the
    fsync itself if no reader did. On an instance of a few megabytes the fsync is the largest
    single cost of a C-STORE, and this hides most of it behind work that needs no disk,
    without waking a third thread (on a virtual machine every wake-up of an idle thread costs
    a good part of a millisecond).
    """

    def __init__(self, path: Path, *, max_bytes: int, store: FileStore) -> None:
        self.path = path
        self.name = str(path)
        self.max_bytes = max_bytes
        self._store = store
        self._sha256 = hashlib.sha256()
        self._next_space_check = SPACE_CHECK_BYTES
        self._written = 0
        self._flushed = 0
        #: Bytes received, including any not written after a refusal.
        self.received_bytes = 0
        #: Why writing stopped (size limit, disk watermark, write error); None while writing.
        self.refusal: str | None = None
        #: The C-STORE command's UIDs, for the audit row of a transfer that never completes.
        self.sop_class_uid: str | None = None
        self.sop_instance_uid: str | None = None
        self._fd: int | None = None
        self._sync_lock = threading.Lock()
        self._sync_started = False
        self._synced = threading.Event()
        self._sync_error: OSError | None = None
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:  # refuse the instance (0xA700), never break the association
            self.refuse(f"cannot create the spool file: {exc}")
            return
        self._check_space(0)

    # pynetdicom calls `_data_set_file.file.flush()` after each fragment.
    @property
    def file(self) -> SpoolFile:
        return self

    def flush(self) -> None:
        """Nothing to flush: each write goes straight to the kernel."""

    def _check_space(self, incoming: int) -> None:
        try:
            self._store.check_space(incoming)
        except StoreFullError as exc:
            self.refuse(str(exc))

    def refuse(self, reason: str) -> None:
        """Stop writing (keep reading): the instance will be refused with ``reason``."""
        if self.refusal is None:
            self.refusal = reason
            log.warning("receive of %s stopped writing: %s", self.path.name, reason)
            if self._fd is not None:
                os.ftruncate(self._fd, 0)  # give the space back at once

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self.received_bytes += n
        if self.refusal is not None or self._fd is None:
            return n
        if self.received_bytes > self.max_bytes:
            self.refuse(f"instance exceeds the limit of {self.max_bytes} bytes")
            return n
        if self.received_bytes >= self._next_space_check:
            self._next_space_check += SPACE_CHECK_BYTES
            self._check_space(SPACE_CHECK_BYTES)
            if self.refusal is not None:
                return n
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            self.refuse(f"cannot write the spool file: {exc}")
            return n
        self._sha256.update(data)
        self._written += n
        if self._written - self._flushed >= WRITEBACK_BYTES:
            start_writeback(self._fd, self._flushed, self._written - self._flushed)
            self._flushed = self._written
        return n

    @property
    def sha256(self) -> str:
        if self.refusal is not None:
            raise StoreError(f"{self.path.name} was not kept: {self.refusal}")
        return self._sha256.hexdigest()

    @property
    def closed(self) -> bool:
        return self._fd is None

    def _claim_sync(self) -> bool:
        """True for the one caller that gets to sync (or close) the file."""
        with self._sync_lock:
            if self._sync_started:
                return False
            self._sync_started = True
            return True

    def sync_now(self) -> None:
        """fsync and close the complete file, unless another thread has begun to."""
        if not self._claim_sync():
            return
        try:
            if self._fd is not None and self.refusal is None:
                os.fsync(self._fd)
        except OSError as exc:
            self._sync_error = exc
        finally:
            self._close_fd()
            self._synced.set()

    def wait_synced(self) -> None:
        """Return once the file's bytes are on disk (fsync), or raise StoreError."""
        self.sync_now()
        self._synced.wait()
        if self._sync_error is not None:
            raise StoreError(
                f"cannot fsync the spool file {self.path.name}: {self._sync_error}"
            ) from self._sync_error

    def close(self) -> None:
        """Close without syncing (the instance is refused), or wait for a sync under way."""
        if self._claim_sync():
            self._close_fd()
            self._synced.set()
        else:
            self._synced.wait()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Close and delete: the transfer failed or its instance was refused or duplicated."""
        self.close()
        self.path.unlink(missing_ok=True)


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing a range to disk now, without waiting (sync_file_range);
    elsewhere a no-op. Durability still comes from the fsync before admission."""
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE)


# -- the substitution in pynetdicom ----------------------------------------------------------

_factories: weakref.WeakKeyDictionary[Any, Callable[[Any], IO[bytes]]] = weakref.WeakKeyDictionary()
_install_lock = threading.Lock()


def _spool_temporary_file(*args: Any, **kwargs: Any) -> Any:
    """Stands in for ``NamedTemporaryFile`` inside pynetdicom's DIMSE message decoder.

    pynetdicom decodes P-DATA in the association's DUL thread, which knows its association and
    so its AE; an AE that registered a factory gets a spool file from it.
    """
    assoc = getattr(threading.current_thread(), "assoc", None)
    factory = _factories.get(getattr(assoc, "ae", None)) if assoc is not None else None
    if factory is None:
        return NamedTemporaryFile(*args, **kwargs)
    return factory(assoc)


def install_spool_factory(ae: Any, factory: Callable[[Any], IO[bytes]]) -> None:
    """Make pynetdicom receive C-STORE data sets for ``ae`` into files from ``factory``."""
    with _install_lock:
        pynetdicom_config.STORE_RECV_CHUNKED_DATASET = True
        if dimse_messages.NamedTemporaryFile is not _spool_temporary_file:
            dimse_messages.NamedTemporaryFile = _spool_temporary_file  # type: ignore[assignment]
        _factories[ae] = factory


def uninstall_spool_factory(ae: Any) -> None:
    with _install_lock:
        _factories.pop(ae, None)


# -- the spool directory ---------------------------------------------------------------------


class SpoolDirectory:
    """The listener's own part of the store's spool, locked against a second listener.

    Everything in it belongs to a transfer of the process that holds the lock, so the start-up
    reconcile may delete what it finds there (a crash left it).
    """

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self.path = store.spool_dir / SPOOL_SUBDIR
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None

    def lock(self) -> None:
        """Take the spool for this process (a no-op when it already holds it)."""
        if self._lock_fd is not None:
            return
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise StoreError(
                f"another listener is using the store's spool {self.path}; "
                "run one listener per store"
            ) from exc
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def new_path(self) -> Path:
        return self.path / f"{uuid.uuid4().hex}.part"

    def leftovers(self) -> list[Path]:
        """Spool files of transfers that never finished (call only while holding the lock)."""
        return sorted(p for p in self.path.iterdir() if p.is_file() and p.name != ".lock")
