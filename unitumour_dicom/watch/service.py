"""Take each stable vendor file from the watched folder, convert it, admit it, record it.

For one file, in order, so that a crash at any point leaves nothing half-admitted and the
file is taken again:

1. its sha256 is computed; a ``converted_files`` row in state ``done`` with that digest means
   the same bytes were converted before: the copy goes to done/, nothing is converted twice;
2. the row is created (or, left ``converting`` by a crash, taken again) and committed;
3. the converter writes into a fresh scratch folder (deterministic UIDs from the digest);
   every file it wrote is validated before the first is admitted;
4. each instance is admitted through :mod:`.admission`, its slide held (not settled) however
   long the admission takes;
5. one transaction: the row becomes ``done`` with the series and slide, the audit row names
   the intake path and the source file, and the slide is due to settle now;
6. the original (and its sidecar) moves to done/; the slide settles and its job is dispatched.

A crash before 5 leaves the row ``converting`` and the file in place: it is converted again
(same UIDs: what was admitted comes back as duplicates). A crash between 5 and 6 leaves a
``done`` row: the file is then moved as a duplicate. A failure moves the file to failed/ with
``<name>.reason.txt``; the row says ``failed`` with the reason (dropping the same bytes again
tries again). When the store is full (``store.min_free_percent``), the file stays where it
is and is taken again once it has been quiet again, as a peer's C-STORE is refused then.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError as SQLIntegrityError

from ..convert.identity import IdentityError, resolve_identity
from ..convert.runner import ConversionError, convert_file, converter_python
from ..db import ConvertedFile, Slide, SlideState, record_event
from ..db.enums import ConvertedFileState
from ..db.types import utcnow
from ..errors import StoreFullError, UniTumourError
from ..runtime import Runtime
from .events import WatchEvent
from .folder import DONE, FAILED, candidates, move_original
from .stability import StabilityTracker

if TYPE_CHECKING:  # imported where used: it reads DICOM headers
    from .admission import ConvertedAdmission

log = logging.getLogger(__name__)

ACTOR = "watch"
#: The intake path, as the audit names it.
INTAKE = "watched-folder"
LOCK_NAME = ".unitumour-watch.lock"

JobsCreatedHook = Callable[[list[int]], None]


@dataclass
class FileOutcome:
    """What became of one dropped file."""

    source: str
    state: str  # done, duplicate, failed, deferred (the store is full: taken again later)
    sha256: str
    reason: str | None = None
    series_instance_uid: str | None = None
    slide_id: int | None = None
    moved_to: Path | None = None
    instances: list[str] = field(default_factory=list)  # store paths admitted
    jobs: list[int] = field(default_factory=list)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class WatchService:
    """The watched folder of one runtime: :meth:`scan_once` takes what is stable; :meth:`start`
    runs it in a thread until :meth:`stop`. One watcher per folder (a lock file says so)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        on_jobs_created: JobsCreatedHook | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        settings = runtime.settings.watch
        if settings.folder is None:
            raise UniTumourError("watch.folder is not set: there is no folder to watch")
        self.runtime = runtime
        self.settings = settings
        self.folder = Path(settings.folder).expanduser().absolute()
        self.python = converter_python(settings.converter_python)
        self.scratch_root = runtime.settings.data_dir / "watch-scratch"
        self.on_jobs_created = on_jobs_created
        self.clock = clock
        self.tracker = StabilityTracker(settings.quiet_seconds)
        self._admission: ConvertedAdmission | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock_fd: int | None = None

    # -- life cycle --------------------------------------------------------------------
    def lock(self) -> None:
        """Hold the folder's lock file: a second watcher on the same folder refuses to start."""
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UniTumourError(f"another watcher holds {self.folder / LOCK_NAME}") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def start(self) -> None:
        self.lock()
        self._audit(WatchEvent.WATCH_STARTED, f"watching {self.folder} with {self.python}")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="watch-folder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop looking; a conversion in flight finishes first (its file stays consistent)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self.unlock()
        self._audit(WatchEvent.WATCH_STOPPED, f"stopped watching {self.folder}")

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.scan_once()
            except Exception:
                log.exception("scanning %s failed; trying again", self.folder)
            self._stop.wait(self.settings.scan_interval_s)

    # -- one pass ----------------------------------------------------------------------
    def scan_once(self) -> list[FileOutcome]:
        """Look at the folder once; take every file that has been stable for the quiet time."""
        found = candidates(self.folder, self.settings.suffixes)
        self.tracker.keep_only(set(found))
        outcomes = []
        for path in found:
            if self._stop.is_set():
                break
            if self.tracker.is_stable(path):
                outcomes.append(self.take(path))
                self.tracker.forget(path)
        return outcomes

    def take(self, path: Path) -> FileOutcome:
        """Convert, admit and record one complete file; see the module for the order."""
        sha256 = file_sha256(path)
        name = path.name
        row = self._claim(path, sha256)
        if row is None:
            return self._duplicate(path, sha256)
        try:
            outcome = self._convert_and_admit(path, sha256, row.first_seen_at)
        except StoreFullError as exc:  # not the file's fault: it stays, and is taken again
            log.warning("%s waits: %s", name, exc)
            return FileOutcome(name, "deferred", sha256, reason=str(exc))
        except (ConversionError, IdentityError, UniTumourError, OSError) as exc:
            return self._fail(path, sha256, str(exc))
        outcome.moved_to = move_original(path, self.folder, DONE, tag=sha256[:8], reason=None)
        outcome.jobs = self._settle()
        log.info("%s converted to series %s", name, outcome.series_instance_uid)
        return outcome

    # -- steps -------------------------------------------------------------------------
    def _claim(self, path: Path, sha256: str) -> ConvertedFile | None:
        """The row to convert under (new, failed before, or left converting); None if done."""
        now = self.clock()
        for _ in range(2):
            try:
                with self.runtime.session() as session:
                    row = session.scalars(
                        select(ConvertedFile).where(ConvertedFile.sha256 == sha256)
                    ).one_or_none()
                    if row is not None and row.state == ConvertedFileState.DONE:
                        return None
                    if row is None:
                        row = ConvertedFile(
                            sha256=sha256,
                            source_name=path.name[:512],
                            size_bytes=path.stat().st_size,
                            first_seen_at=now,
                            attempts=0,
                            state=ConvertedFileState.CONVERTING,
                        )
                        session.add(row)
                    elif row.state == ConvertedFileState.CONVERTING:
                        record_event(
                            session=session,
                            event=WatchEvent.WATCH_RETRIED,
                            message=(
                                f"{path.name} was left half-done (attempt {row.attempts}); "
                                "converting it again"
                            ),
                            actor=ACTOR,
                            details={"intake": INTAKE, "source_file": path.name, "sha256": sha256},
                        )
                    row.state = ConvertedFileState.CONVERTING
                    row.source_name = path.name[:512]
                    row.attempts += 1
                    row.started_at = now
                    row.reason = None
                    session.flush()
                    session.expunge(row)
                    return row
            except SQLIntegrityError:  # another process made the row meanwhile: read it again
                continue
        raise UniTumourError(f"cannot record {path.name} in converted_files")

    def _convert_and_admit(self, path: Path, sha256: str, first_seen: datetime) -> FileOutcome:
        from .admission import ConvertedAdmission

        if self._admission is None:
            self._admission = ConvertedAdmission(self.runtime)
        admission = self._admission
        identity = resolve_identity(path, sha256, filename_pattern=self.settings.filename_pattern)
        scratch = self.scratch_root / sha256
        shutil.rmtree(scratch, ignore_errors=True)
        out_dir = scratch / "out"
        try:
            conversion = convert_file(
                path,
                out_dir,
                identity=identity,
                uid_seed=sha256,
                python=self.python,
                timeout_s=self.settings.timeout_s,
                max_output_bytes=self.settings.max_output_bytes,
                tile_size=self.settings.tile_size,
                workers=self.settings.workers,
                content_datetime=first_seen,
            )
            summaries = [admission.check(p) for p in conversion.files]
            series = {s.series_instance_uid for s in summaries}
            if len(series) != 1:
                raise ConversionError(f"the converter wrote {len(series)} series, not one")
            hold = self.settings.timeout_s + self.runtime.settings.listener.quiet_seconds
            admitted = [
                admission.admit(p, source_name=self.settings.source_name, hold_seconds=hold)
                for p in conversion.files
            ]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        slide_ids = {a.slide_id for a in admitted if a.slide_id is not None}
        slide_id = min(slide_ids) if slide_ids else None
        [series_uid] = series
        study_uid = summaries[0].study_instance_uid
        now = self.clock()
        with self.runtime.session() as session:
            session.execute(
                update(ConvertedFile)
                .where(ConvertedFile.sha256 == sha256)
                .values(
                    state=ConvertedFileState.DONE,
                    finished_at=now,
                    identity_source=identity.source[:128],
                    study_instance_uid=study_uid,
                    series_instance_uid=series_uid,
                    slide_id=slide_id,
                )
            )
            if slide_id is not None:  # the whole slide is in: it settles at the next look
                session.execute(
                    update(Slide)
                    .where(Slide.id == slide_id, Slide.state == SlideState.RECEIVING)
                    .values(settle_at=now)
                    .execution_options(synchronize_session=False)
                )
            details = {
                "intake": INTAKE,
                "source_file": path.name,
                "folder": str(self.folder),
                "sha256": sha256,
                "size_bytes": path.stat().st_size,
                "identity_source": identity.source,
                "series_instance_uid": series_uid,
                "study_instance_uid": study_uid,
                "instances": [a.path for a in admitted],
                "outcomes": [str(a.outcome) for a in admitted],
                "converter": conversion.source,
            }
            record_event(
                session=session,
                event=WatchEvent.WATCH_CONVERTED,
                message=(
                    f"{path.name} from the watched folder converted to series {series_uid}: "
                    f"{len(admitted)} instance(s) admitted ({identity.source})"
                ),
                actor=ACTOR,
                slide_id=slide_id,
                details=details,
            )
            for warning in identity.warnings:
                record_event(
                    session=session,
                    event=WatchEvent.WATCH_IDENTITY_GENERATED,
                    message=warning,
                    actor=ACTOR,
                    slide_id=slide_id,
                    details={"intake": INTAKE, "source_file": path.name, "sha256": sha256},
                )
        for warning in identity.warnings:
            log.warning("%s", warning)
        return FileOutcome(
            source=path.name,
            state="done",
            sha256=sha256,
            series_instance_uid=series_uid,
            slide_id=slide_id,
            instances=[a.path for a in admitted],
        )

    def _duplicate(self, path: Path, sha256: str) -> FileOutcome:
        with self.runtime.session() as session:
            row = session.scalars(select(ConvertedFile).where(ConvertedFile.sha256 == sha256)).one()
            series_uid, slide_id, first = row.series_instance_uid, row.slide_id, row.source_name
            record_event(
                session=session,
                event=WatchEvent.WATCH_DUPLICATE,
                message=(
                    f"{path.name} has the same bytes as {first}, converted before to series "
                    f"{series_uid}; not converted again"
                ),
                actor=ACTOR,
                slide_id=slide_id,
                details={"intake": INTAKE, "source_file": path.name, "sha256": sha256},
            )
        moved = move_original(
            path,
            self.folder,
            DONE,
            tag=sha256[:8],
            reason=f"already converted (same bytes as {first}, series {series_uid})",
        )
        return FileOutcome(
            source=path.name,
            state="duplicate",
            sha256=sha256,
            series_instance_uid=series_uid,
            slide_id=slide_id,
            moved_to=moved,
        )

    def _fail(self, path: Path, sha256: str, reason: str) -> FileOutcome:
        log.warning("%s failed: %s", path.name, reason)
        with self.runtime.session() as session:
            session.execute(
                update(ConvertedFile)
                .where(ConvertedFile.sha256 == sha256)
                .values(state=ConvertedFileState.FAILED, reason=reason, finished_at=self.clock())
            )
            record_event(
                session=session,
                event=WatchEvent.WATCH_FAILED,
                message=f"{path.name} from the watched folder not converted: {reason}"[:4000],
                actor=ACTOR,
                details={
                    "intake": INTAKE,
                    "source_file": path.name,
                    "sha256": sha256,
                    "reason": reason[:4000],
                },
            )
        moved = move_original(path, self.folder, FAILED, tag=sha256[:8], reason=reason)
        return FileOutcome(path.name, "failed", sha256, reason=reason, moved_to=moved)

    def _settle(self) -> list[int]:
        """Settle what is due now (the converted slide) and hand its job to the dispatcher."""
        from ..ingest import settle_due_slides

        with self.runtime.session() as session:
            jobs = settle_due_slides(
                session=session,
                store=self.runtime.store,
                now=self.clock(),
                max_attempts=self.runtime.settings.worker.max_attempts,
            )
            ids = [job.id for job in jobs]
        if ids and self.on_jobs_created is not None:
            try:
                self.on_jobs_created(ids)
            except Exception:
                log.exception("dispatch of jobs %s failed; they stay queued", ids)
        return ids

    def _audit(self, event: WatchEvent, message: str) -> None:
        try:
            with self.runtime.session() as session:
                record_event(session=session, event=event, message=message, actor=ACTOR)
        except Exception:
            log.exception("cannot audit %s", event)
