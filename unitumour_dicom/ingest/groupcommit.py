"""Group commit: admissions that arrive together share their directory fsyncs and one commit.

After its file is linked into the store, an admission has two durable steps left, each a
journal commit of a few milliseconds: the fsync of the directory it was linked into, and
the commit of its rows (SQLite's WAL fsync, PostgreSQL's WAL flush). Alone, every instance
pays both. Here the first thread to arrive becomes the leader and, for every admission
queued by then, fsyncs each directory once and runs every admission's rows in one
transaction with one commit; the other threads wait for that commit and return their own
results. So associations sending at once share the cost, and each caller still returns only
after its own directory entry is durable and its own rows are committed (DESIGN rule 1).

A thread alone never waits for or hands over to another: it leads its own batch, so a single
association pays nothing for the mechanism. If a batch's transaction fails (a concurrent
slide creation in another process, a database error), each of its admissions is committed
alone, so that one admission's failure is never another's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Generic, TypeVar

from sqlalchemy.exc import IntegrityError as SQLIntegrityError
from sqlalchemy.orm import Session

from ..errors import StoreError
from ..store.filestore import fsync_dir

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Most admissions one transaction commits (bounds the work a leader does for others).
MAX_BATCH = 32
#: Attempts of an admission committed alone that meets a unique-constraint race.
DB_ATTEMPTS = 3


class _Ticket(Generic[T]):
    """One admission's durable steps, and their result once done."""

    __slots__ = ("dirs", "done", "error", "value", "work")

    def __init__(self, work: Callable[[Session], T], dirs: tuple[Path, ...]) -> None:
        self.work = work
        self.dirs = dirs
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None

    def finish(self, value: T | None = None, error: BaseException | None = None) -> None:
        self.value, self.error, self.done = value, error, True

    def result(self) -> T:
        if self.error is not None:
            raise self.error
        return self.value  # type: ignore[return-value]


class GroupCommit:
    """Leader/follower group commit over one database (see the module)."""

    def __init__(
        self,
        session: Callable[[], AbstractContextManager[Session]],
        *,
        max_batch: int = MAX_BATCH,
        fsync_directory: Callable[[Path], None] = fsync_dir,
    ) -> None:
        self._session = session
        self._fsync_dir = fsync_directory
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._queue: list[_Ticket[object]] = []
        self._leading = False
        #: Batches committed and admissions they held (for the log and the benchmarks).
        self.batches = 0
        self.admissions = 0

    def run(self, work: Callable[[Session], T], *, sync_dirs: Collection[Path] = ()) -> T:
        """fsync ``sync_dirs``, then run ``work`` in a transaction and commit it; return what
        ``work`` returned once committed (or raise its error). ``work`` may run twice (a
        failed batch is retried admission by admission): it must only touch the session."""
        ticket: _Ticket[T] = _Ticket(work, tuple(sync_dirs))
        with self._cond:
            self._queue.append(ticket)  # type: ignore[arg-type]
        while True:
            with self._cond:
                while not ticket.done and self._leading:
                    self._cond.wait()
                if ticket.done:
                    break
                self._leading = True
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
            try:
                self._commit(batch)
            finally:
                with self._cond:
                    self._leading = False
                    self._cond.notify_all()
        return ticket.result()

    # -- the leader's work -----------------------------------------------------------------
    def _commit(self, batch: list[_Ticket[object]]) -> None:
        try:
            ready = self._sync_dirs(batch)
            self.batches += 1
            self.admissions += len(batch)
            if len(ready) > 1:
                try:
                    with self._session() as session:
                        values = [ticket.work(session) for ticket in ready]
                except Exception as exc:
                    log.info(
                        "a group commit of %d admissions failed (%s); committing each alone",
                        len(ready),
                        exc,
                    )
                else:
                    for ticket, value in zip(ready, values, strict=True):
                        ticket.finish(value)
                    return
            for ticket in ready:
                self._alone(ticket)
        except BaseException as exc:  # never leave a follower waiting
            for ticket in batch:
                if not ticket.done:
                    ticket.finish(error=exc)
            raise

    def _sync_dirs(self, batch: list[_Ticket[object]]) -> list[_Ticket[object]]:
        """fsync each directory of the batch once; the tickets whose directories all made it."""
        failed: dict[Path, OSError] = {}
        for directory in dict.fromkeys(d for ticket in batch for d in ticket.dirs):
            try:
                self._fsync_dir(directory)
            except OSError as exc:
                failed[directory] = exc
        if not failed:
            return batch
        ready = []
        for ticket in batch:
            errors = [failed[d] for d in ticket.dirs if d in failed]
            if errors:
                ticket.finish(error=StoreError(f"cannot fsync the store directory: {errors[0]}"))
            else:
                ready.append(ticket)
        return ready

    def _alone(self, ticket: _Ticket[object]) -> None:
        for attempt in range(1, DB_ATTEMPTS + 1):
            try:
                with self._session() as session:
                    value = ticket.work(session)
            except SQLIntegrityError as exc:
                if attempt == DB_ATTEMPTS:
                    ticket.finish(error=exc)
                    return
                log.info("retrying an admission (concurrent slide creation): %s", exc)
            except Exception as exc:
                ticket.finish(error=exc)
                return
            else:
                ticket.finish(value)
                return
