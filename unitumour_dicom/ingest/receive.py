"""The one receive path: a spooled instance becomes a stored, recorded one, or a refusal.

Every intake path ends here (DESIGN: "one receive path"): the C-STORE SCP, ``unitumour
process``, and later STOW-RS, pull and the watched folder. The caller owns its transport and
gets the bytes into the store's spool area (the SCP streams them there as they arrive;
:func:`spool_stream` and :func:`spool_file` do it for a stream or a file); this module owns
everything after: the header read (pixels are never decoded), validation, the disk
watermark, durable admission (fsync, link into the store, one committed transaction) and
the audit row that says by which path and from whom the instance came. The outcome carries
the DICOM status the conformance statement promises, so a C-STORE answers it as it is and
STOW-RS maps it onto its own response.

Nothing is acknowledged before it is durable and committed, and nothing received is
silently dropped: a refusal leaves an ``instance.refused`` audit row and no file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from sqlalchemy.exc import SQLAlchemyError

from ..config.sections import ListenerSettings
from ..db import IntakePath
from ..db.types import utcnow
from ..errors import InvalidInstanceError, StoreError, StoreFullError
from ..runtime import Runtime
from ..store import FileStore
from .admit import Admission, AdmissionOutcome, Admitter, ReceivedFile, Sender, record_refusal
from .contexts import storage_sop_classes
from .events import IngestEvent
from .header import read_instance_header
from .status import StoreStatus
from .validate import InstanceLimits, validate_instance

log = logging.getLogger(__name__)

_COPY_CHUNK = 1 << 20

__all__ = [
    "IntakeInfo",
    "IntakePath",
    "ReceiveOutcome",
    "Receiver",
    "SpoolWriter",
    "receive_instance",
    "spool_file",
    "spool_stream",
]


@dataclass(frozen=True)
class IntakeInfo:
    """By which path, and from whom, an instance arrives; recorded with it and its refusal.

    ``sender`` is who sent it as that path knows them (calling AE title, web user, source AE,
    folder); ``peer`` where from (host:port, a folder path). ``sop_class_uid`` and
    ``sop_instance_uid`` are what the transport itself declared (a C-STORE request's
    Affected SOP Class and Instance UIDs), checked against the data set; None where the
    transport declares nothing and the data set's own UIDs stand. ``quiet_seconds`` None:
    the listener's configured quiet time for the instance's slide.
    """

    path: IntakePath
    sender: str | None = None
    peer: str | None = None
    association_id: int | None = None
    quiet_seconds: float | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    #: The study the transport addressed (STOW-RS to /studies/{study}): an instance of
    #: another study is refused with 0xA900 (PS3.18 10.5), never stored under the wrong one.
    study_instance_uid: str | None = None

    def details(self) -> dict[str, Any]:
        """The audit details that name the path and the sender."""
        return {"intake": str(self.path), "sender": self.sender, "peer": self.peer}


@dataclass(frozen=True)
class ReceiveOutcome:
    """What became of one received instance: the DICOM status to answer and why."""

    status: int
    reason: str
    sop_class_uid: str
    sop_instance_uid: str
    admission: Admission | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == StoreStatus.SUCCESS

    @property
    def instance_id(self) -> int | None:
        return self.admission.instance_id if self.admission is not None else None

    @property
    def slide_id(self) -> int | None:
        return self.admission.slide_id if self.admission is not None else None

    @property
    def duplicate(self) -> bool:
        return self.admission is not None and self.admission.outcome is AdmissionOutcome.DUPLICATE


class Receiver:
    """The receive path over one runtime's store and database, shared by every intake path
    of a process (its admitter serialises admissions of one SOP Instance UID, and commits
    admissions that arrive together in one transaction)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        settings: ListenerSettings | None = None,
        clock: Callable[[], datetime] = utcnow,
        admitter: Admitter | None = None,
    ) -> None:
        self.runtime = runtime
        self.store: FileStore = runtime.store
        self.settings = settings or runtime.settings.listener
        self.limits = InstanceLimits.from_settings(self.settings)
        self.allowed_sop_classes = frozenset(storage_sop_classes(self.settings.extra_sop_classes))
        self.admitter = admitter or Admitter(runtime, clock=clock)

    def receive(self, source: ReceivedFile | Path, intake: IntakeInfo) -> ReceiveOutcome:
        """Validate, make durable and admit one instance; refuse (and audit) it otherwise.

        ``source``: a :class:`ReceivedFile` already in the store's spool area, which this
        call consumes (moved into the store, or deleted); or the path of a file anywhere,
        which is copied into the spool first and never touched itself.
        """
        if isinstance(source, Path):
            try:
                source = spool_file(self.store, source, max_bytes=self.limits.max_instance_bytes)
            except OSError as exc:
                return self._refused(
                    intake,
                    int(StoreStatus.OUT_OF_RESOURCES),
                    f"cannot copy it into the store's spool: {exc}",
                )
        started = time.perf_counter()
        uids = [intake.sop_class_uid or "", intake.sop_instance_uid or "", "", ""]
        try:
            status, reason, admission = self._admit(source, intake, uids)
        finally:
            if source.path.exists():  # refused, duplicate or failed: nothing of it is kept
                source.path.unlink(missing_ok=True)
        sop_class, sop_instance, study, series = uids
        if status != StoreStatus.SUCCESS:
            return self._refused(intake, status, reason, sop_class, sop_instance)
        log.debug(
            "%s admitted in %.3f s by %s (%s)",
            sop_instance,
            time.perf_counter() - started,
            intake.path,
            reason,
        )
        return ReceiveOutcome(status, reason, sop_class, sop_instance, admission, study, series)

    def _admit(
        self, received: ReceivedFile, intake: IntakeInfo, uids: list[str]
    ) -> tuple[int, str, Admission | None]:
        """(status, reason, admission when admitted). ``uids`` (SOP class, SOP instance) is
        completed from the data set where the transport declared none, for the audit row,
        and given the study and series of a valid instance (for the caller's links)."""
        if received.refusal is not None:  # the transport stopped writing it
            return int(StoreStatus.OUT_OF_RESOURCES), received.refusal, None
        shown = (intake.sop_instance_uid or received.path.name)[:80]
        try:
            header = read_instance_header(
                received.path,
                scratch_dir=received.path.parent,
                max_inflated_bytes=self.limits.max_instance_bytes,
            )
            for i, keyword in enumerate(("SOPClassUID", "SOPInstanceUID")):
                if not uids[i]:
                    uids[i] = _declared(header.dataset, keyword)
            summary = validate_instance(
                header,
                command_sop_class_uid=uids[0],
                command_sop_instance_uid=uids[1],
                allowed_sop_classes=self.allowed_sop_classes,
                limits=self.limits,
            )
            uids[2:] = [summary.study_instance_uid, summary.series_instance_uid]
            if intake.study_instance_uid and summary.study_instance_uid != (
                intake.study_instance_uid
            ):
                return (
                    int(StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS),
                    f"Study Instance UID {summary.study_instance_uid} is not the "
                    f"{intake.study_instance_uid} the request addressed",
                    None,
                )
            self.store.check_space()
            admission = self.admitter.admit(received, summary, self._sender(intake))
        except InvalidInstanceError as exc:
            return exc.status, str(exc), None
        except StoreFullError as exc:
            return int(StoreStatus.OUT_OF_RESOURCES), str(exc), None
        except SQLAlchemyError as exc:
            log.error("database error while admitting %s: %s", shown, exc)
            return int(StoreStatus.OUT_OF_RESOURCES), "the database is unavailable", None
        except (StoreError, OSError) as exc:
            log.error("store error while admitting %s: %s", shown, exc)
            return int(StoreStatus.OUT_OF_RESOURCES), f"the store cannot keep it: {exc}", None
        except Exception as exc:  # a defect of ours must not read as the sender's fault
            log.exception("unexpected error while admitting %s", shown)
            return int(StoreStatus.OUT_OF_RESOURCES), f"internal error: {type(exc).__name__}", None
        return int(StoreStatus.SUCCESS), f"{admission.outcome} v{admission.version}", admission

    def _sender(self, intake: IntakeInfo) -> Sender:
        quiet = intake.quiet_seconds
        return Sender(
            intake.association_id,
            intake.sender,
            self.settings.quiet_seconds if quiet is None else quiet,
            intake=intake.path,
            peer=intake.peer,
        )

    def _refused(
        self,
        intake: IntakeInfo,
        status: int,
        reason: str,
        sop_class: str | None = None,
        sop_instance: str | None = None,
    ) -> ReceiveOutcome:
        sop_class = sop_class if sop_class is not None else intake.sop_class_uid or ""
        sop_instance = sop_instance if sop_instance is not None else intake.sop_instance_uid or ""
        sop_class, sop_instance = sop_class[:80], sop_instance[:80]
        log.warning(
            "refused %s (%s from %s) with 0x%04X: %s",
            sop_instance[:80] or "an instance",
            intake.path,
            intake.sender or "?",
            status,
            reason,
        )
        record_refusal(
            self.runtime,
            association_id=intake.association_id,
            actor=intake.sender,
            sop_class_uid=sop_class,
            sop_instance_uid=sop_instance,
            status=status,
            reason=reason,
            intake=intake.details(),
        )
        return ReceiveOutcome(status, reason, sop_class, sop_instance)

    def record_incomplete(self, intake: IntakeInfo, received_bytes: int) -> None:
        """Audit a transfer that ended before its instance was complete (nothing kept)."""
        record_refusal(
            self.runtime,
            association_id=intake.association_id,
            actor=intake.sender,
            sop_class_uid=intake.sop_class_uid or "",
            sop_instance_uid=intake.sop_instance_uid or "",
            status=None,
            reason=(
                f"{intake.path} transfer ended after {received_bytes} bytes, before the "
                "instance was complete; nothing kept"
            ),
            event=IngestEvent.INSTANCE_INCOMPLETE,
            intake=intake.details(),
        )


def _declared(ds: Any, keyword: str) -> str:
    """A UID the data set declares, as text (validation judges it); '' if unreadable."""
    try:
        return str(ds.get(keyword, "") or "")
    except Exception:  # pydicom decodes lazily: a broken value is validation's to refuse
        return ""


def receive_instance(
    source: ReceivedFile | Path, *, intake: IntakeInfo, receiver: Receiver
) -> ReceiveOutcome:
    """Receive one instance by the one receive path; see :meth:`Receiver.receive`."""
    return receiver.receive(source, intake)


class SpoolWriter:
    """A push-style writer of one instance into the store's spool, for transports that are
    handed bytes (a STOW-RS body part) rather than a stream to read.

    Hashes and counts on the way; past ``max_bytes``, or below the disk watermark, the rest is
    accepted and dropped and :meth:`finish` returns a file that carries the refusal (0xA700),
    as a C-STORE receive does. Until :meth:`finish`, :meth:`abort` removes the partial file.
    """

    def __init__(self, store: FileStore, *, max_bytes: int, expected_bytes: int = 0) -> None:
        self.path = store.new_spool_path()
        self.max_bytes = max_bytes
        self.received = 0
        self.refusal: str | None = None
        self._digest = hashlib.sha256()
        try:
            store.check_space(expected_bytes)
        except StoreFullError as exc:
            self.refusal = str(exc)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def write(self, chunk: bytes | bytearray | memoryview) -> int:
        n = len(chunk)
        self.received += n
        if self.refusal is not None or self._fd is None:
            return n
        if self.received > self.max_bytes:
            self.refusal = f"instance exceeds the limit of {self.max_bytes} bytes"
            os.ftruncate(self._fd, 0)
            return n
        view = memoryview(chunk)
        while view:
            view = view[os.write(self._fd, view) :]
        self._digest.update(chunk)
        return n

    def finish(self, *, wait_durable: bool = False) -> ReceivedFile:
        """The complete file, for :meth:`Receiver.receive` (which fsyncs it, unless
        ``wait_durable`` did here)."""
        fd, self._fd = self._fd, None
        if fd is None:
            raise StoreError(f"{self.path.name} was already finished or aborted")
        try:
            if wait_durable and self.refusal is None:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise
        os.close(fd)
        if self.refusal is not None:
            return ReceivedFile(self.path, "", self.received, refusal=self.refusal)
        return ReceivedFile(
            self.path,
            self._digest.hexdigest(),
            self.received,
            (lambda: None) if wait_durable else None,
        )

    def abort(self) -> None:
        """Throw away what was written (a transfer that ended early)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)


def spool_stream(
    store: FileStore,
    stream: IO[bytes] | Iterable[bytes],
    *,
    max_bytes: int,
    expected_bytes: int = 0,
    wait_durable: bool = False,
) -> ReceivedFile:
    """Write a stream (a downloaded object, a file) into the store's spool with a
    :class:`SpoolWriter`, for :meth:`Receiver.receive`."""
    writer = SpoolWriter(store, max_bytes=max_bytes, expected_bytes=expected_bytes)
    chunks: Iterable[bytes] = (
        iter(lambda: stream.read(_COPY_CHUNK), b"") if hasattr(stream, "read") else stream
    )
    try:
        for chunk in chunks:
            writer.write(chunk)
        return writer.finish(wait_durable=wait_durable)
    except BaseException:
        writer.abort()
        raise


def spool_file(store: FileStore, source: Path, *, max_bytes: int) -> ReceivedFile:
    """Copy a file from anywhere into the store's spool (the original is left as it is)."""
    with open(source, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        return spool_stream(store, fh, max_bytes=max_bytes, expected_bytes=size)
