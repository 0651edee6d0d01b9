"""Admission: a validated, fully received file becomes a stored instance with its row.

Order of events, so that no instance is acknowledged before it is durable and none is half
admitted: (1) the digest is compared with earlier versions of the same SOP Instance UID (same
bytes: a duplicate, nothing new is kept); (2) the spool file is fsynced and linked into the
store under a new version, and its directory fsynced; (3) the instance row, the slide's timer
and the audit row commit in one transaction; only then does the caller answer success. The
directory fsync and the commit of (2) and (3) are shared by admissions that arrive together
(:mod:`.groupcommit`). A failure after (2) removes the
file again; a crash between (2) and (3) leaves a complete, validated file without a row, which
the start-up reconcile admits.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from ..db import Association, Instance, InstanceState, record_event
from ..db.types import utcnow
from ..errors import StoreError
from ..runtime import Runtime
from .events import IngestEvent
from .groupcommit import GroupCommit
from .series import record_arrival, touch_receiving_slide
from .validate import InstanceSummary

log = logging.getLogger(__name__)

ACTOR = "listener"
_VERBS = {
    IngestEvent.INSTANCE_VERSION: "stored as a new version (different bytes)",
    IngestEvent.INSTANCE_RECOVERED: (
        "recovered at start-up (complete and valid in the store, its row was never committed)"
    ),
}
_VERSION_ATTEMPTS = 20


class AdmissionOutcome(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    VERSION = "version"


@dataclass(frozen=True)
class ReceivedFile:
    """A complete received file in the spool, with the digest computed while it arrived.

    ``wait_durable``, when given, returns once the file's bytes are on disk (the receiver
    started its fsync early); without it, the store fsyncs the file itself. ``refusal``:
    why the transport stopped writing it (a size limit, the disk watermark); such a file is
    refused, never admitted.
    """

    path: Path
    sha256: str
    size_bytes: int
    wait_durable: Callable[[], None] | None = None
    refusal: str | None = None


@dataclass(frozen=True)
class Sender:
    """Who sent an instance, by which intake path, and the quiet time of its slides."""

    association_id: int | None
    ae_title: str | None
    quiet_seconds: float
    intake: str | None = None
    peer: str | None = None

    def details(self) -> dict[str, str | None]:
        return {"intake": self.intake, "sender": self.ae_title, "peer": self.peer}


@dataclass(frozen=True)
class Admission:
    outcome: AdmissionOutcome
    instance_id: int
    version: int
    slide_id: int | None
    path: str


@dataclass(frozen=True)
class _Stored:
    id: int
    version: int
    path: str


class _KeyedLocks:
    """One lock per key (SOP Instance UID), created on demand and dropped when unused."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._users: dict[str, int] = defaultdict(int)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
            self._users[key] += 1
        try:
            with lock:
                yield
        finally:
            with self._guard:
                self._users[key] -= 1
                if self._users[key] == 0:
                    del self._users[key]
                    del self._locks[key]


class Admitter:
    """Admits received instances into one runtime's store and database.

    Admissions of the same SOP Instance UID are serialised in this process (one listener per
    store is enforced by the spool lock), so two copies arriving at once cannot both become
    versions, or both miss that the other is a duplicate.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        clock: Callable[[], datetime] = utcnow,
        group: GroupCommit | None = None,
    ) -> None:
        self.runtime = runtime
        self.store = runtime.store
        self.clock = clock
        self._locks = _KeyedLocks()
        #: Shared by every admission of this admitter: concurrent ones commit together.
        self.group = group or GroupCommit(runtime.session)

    def admit(self, received: ReceivedFile, summary: InstanceSummary, sender: Sender) -> Admission:
        with self._locks.hold(summary.sop_instance_uid):
            duplicate, version = self._existing(received, summary)
            if duplicate is not None:
                return self._duplicate(received, summary, sender, duplicate)
            relpath, version = self._place(received, summary, version)
            try:
                return self.group.run(
                    lambda s: self._rows(s, received, summary, sender, version, relpath),
                    sync_dirs=[self.store.root / relpath.rsplit("/", 1)[0]],
                )
            except BaseException:
                try:
                    self.store.remove(relpath)
                except OSError:
                    log.exception("could not remove %s after a failed admission", relpath)
                raise

    # -- steps ---------------------------------------------------------------------------
    def _existing(
        self, received: ReceivedFile, summary: InstanceSummary
    ) -> tuple[_Stored | None, int]:
        """A stored version with the same bytes (a duplicate), and the next version number.

        One indexed read on a bare connection: no ORM session, no transaction to commit."""
        with self.runtime.engine.connect() as conn:
            rows = conn.execute(
                select(
                    Instance.id, Instance.version, Instance.sha256, Instance.state, Instance.path
                )
                .where(Instance.sop_instance_uid == summary.sop_instance_uid)
                .order_by(Instance.version)
            ).all()
        for row in rows:
            if row.sha256 == received.sha256 and row.state == InstanceState.STORED:
                return _Stored(row.id, row.version, row.path), row.version
        return None, (rows[-1].version + 1 if rows else 1)

    def _place(
        self, received: ReceivedFile, summary: InstanceSummary, version: int
    ) -> tuple[str, int]:
        """Move the spool file into the store; a leftover at that version moves us past it.

        The directory it lands in is fsynced by the group commit, before the rows commit."""
        if received.wait_durable is not None:
            received.wait_durable()
        for candidate in range(version, version + _VERSION_ATTEMPTS):
            relpath = self.store.instance_relpath(
                summary.study_instance_uid,
                summary.series_instance_uid,
                summary.sop_instance_uid,
                candidate,
            )
            try:
                self.store.put_file(
                    received.path,
                    relpath,
                    sha256=received.sha256,
                    synced=received.wait_durable is not None,
                    sync_dir=False,
                )
            except StoreError:
                if self.store.exists(relpath):
                    log.warning("%s exists without a row (reconcile will look at it)", relpath)
                    continue
                raise
            return relpath, candidate
        raise StoreError(f"no free version for {summary.sop_instance_uid} after {version}")

    def adopt(
        self, relpath: str, version: int, summary: InstanceSummary, received: ReceivedFile
    ) -> Admission:
        """Record a complete file already in the store without its row (crash recovery)."""
        sender = Sender(None, None, self.runtime.settings.listener.quiet_seconds)
        with self._locks.hold(summary.sop_instance_uid):
            return self.group.run(
                lambda session: self._rows(
                    session,
                    received,
                    summary,
                    sender,
                    version,
                    relpath,
                    event=IngestEvent.INSTANCE_RECOVERED,
                )
            )

    def _rows(
        self,
        session: Session,
        received: ReceivedFile,
        summary: InstanceSummary,
        sender: Sender,
        version: int,
        relpath: str,
        *,
        event: IngestEvent | None = None,
    ) -> Admission:
        """The instance row, its slide's timer, the audit row and the association's counts
        (committed by the group commit, alone or with other admissions)."""
        now = self.clock()
        slide_id = None
        if summary.is_wsi:
            arrival = record_arrival(
                session=session,
                summary=summary,
                source_ae=sender.ae_title,
                quiet_seconds=sender.quiet_seconds,
                now=now,
                association_id=sender.association_id,
            )
            slide_id = arrival.slide_id
        instance_id = session.execute(
            insert(Instance)
            .values(
                sop_instance_uid=summary.sop_instance_uid,
                version=version,
                sop_class_uid=summary.sop_class_uid,
                transfer_syntax_uid=summary.transfer_syntax_uid,
                study_instance_uid=summary.study_instance_uid,
                series_instance_uid=summary.series_instance_uid,
                image_type=summary.image_type,
                total_pixel_matrix_columns=summary.total_pixel_matrix_columns,
                total_pixel_matrix_rows=summary.total_pixel_matrix_rows,
                number_of_frames=summary.number_of_frames,
                sha256=received.sha256,
                size_bytes=received.size_bytes,
                path=relpath,
                state=InstanceState.STORED,
                received_at=now,
                association_id=sender.association_id,
                slide_id=slide_id,
                intake=sender.intake,
                sender=sender.ae_title[:128] if sender.ae_title else None,
            )
            .returning(Instance.id)
        ).scalar_one()
        outcome = AdmissionOutcome.VERSION if version > 1 else AdmissionOutcome.STORED
        note = "" if summary.is_wsi else " (not a WSI: stored, not processed)"
        if event is None:
            event = (
                IngestEvent.INSTANCE_VERSION
                if outcome is AdmissionOutcome.VERSION
                else IngestEvent.INSTANCE_STORED
            )
        record_event(
            session=session,
            event=event,
            message=(
                f"{summary.sop_instance_uid} v{version} "
                f"{_VERBS.get(event, 'stored')}, {received.size_bytes} bytes{note}"
            ),
            actor=sender.ae_title or ACTOR,
            association_id=sender.association_id,
            slide_id=slide_id,
            details={
                "sop_instance_uid": summary.sop_instance_uid,
                "sop_class_uid": summary.sop_class_uid,
                "version": version,
                "sha256": received.sha256,
                "size_bytes": received.size_bytes,
                "transfer_syntax_uid": summary.transfer_syntax_uid,
                "image_type": summary.image_type,
                **sender.details(),
            },
        )
        _count(session, sender.association_id, received.size_bytes)
        return Admission(outcome, instance_id, version, slide_id, relpath)

    def _duplicate(
        self, received: ReceivedFile, summary: InstanceSummary, sender: Sender, existing: _Stored
    ) -> Admission:
        def rows(session: Session) -> int | None:
            slide_id = None
            if summary.is_wsi:
                slide_id = touch_receiving_slide(
                    session=session,
                    series_instance_uid=summary.series_instance_uid,
                    quiet_seconds=sender.quiet_seconds,
                    now=self.clock(),
                )
            record_event(
                session=session,
                event=IngestEvent.INSTANCE_DUPLICATE,
                message=(
                    f"{summary.sop_instance_uid} received again with the same bytes as "
                    f"v{existing.version}; nothing new kept"
                ),
                actor=sender.ae_title or ACTOR,
                association_id=sender.association_id,
                slide_id=slide_id,
                details={
                    "sop_instance_uid": summary.sop_instance_uid,
                    "version": existing.version,
                    "sha256": received.sha256,
                    **sender.details(),
                },
            )
            _count(session, sender.association_id, received.size_bytes)
            return slide_id

        slide_id = self.group.run(rows)
        received.path.unlink(missing_ok=True)
        return Admission(
            AdmissionOutcome.DUPLICATE, existing.id, existing.version, slide_id, existing.path
        )


def _count(session: Session, association_id: int | None, size_bytes: int) -> None:
    if association_id is None:
        return
    session.execute(
        update(Association)
        .where(Association.id == association_id)
        .values(
            n_instances=Association.n_instances + 1,
            n_bytes=Association.n_bytes + size_bytes,
        )
        .execution_options(synchronize_session=False)
    )


def record_refusal(
    runtime: Runtime,
    *,
    association_id: int | None,
    actor: str | None,
    sop_class_uid: str,
    sop_instance_uid: str,
    status: int | None,
    reason: str,
    event: IngestEvent = IngestEvent.INSTANCE_REFUSED,
    intake: dict[str, Any] | None = None,
) -> None:
    """Audit a refused (status answered) or incomplete (no status) instance; if the database
    is down, log it instead. ``intake``: the path and sender details (IntakeInfo.details)."""
    shown_uid = str(sop_instance_uid)[:80]
    answered = f" (status 0x{status:04X})" if status is not None else ""
    try:
        with runtime.session() as session:
            record_event(
                session=session,
                event=event,
                message=f"{shown_uid}: {reason}{answered}",
                actor=actor or ACTOR,
                association_id=association_id,
                details={
                    "sop_instance_uid": shown_uid,
                    "sop_class_uid": str(sop_class_uid)[:80],
                    "status": status,
                    "reason": reason,
                    **(intake or {}),
                },
            )
            if association_id is not None:
                session.execute(
                    update(Association)
                    .where(Association.id == association_id)
                    .values(n_failures=Association.n_failures + 1)
                    .execution_options(synchronize_session=False)
                )
    except Exception:
        log.exception("could not audit %s of %s%s: %s", event, shown_uid, answered, reason)
