"""The one call by which a pulled instance enters admission.

A retrieved instance (WADO-RS part, C-GET sub-operation) is spooled into the store's spool
area by its transport, then handed to :func:`receive_pulled`, which passes it to the one
receive path (``ingest.receive``): header read, validation, disk watermark, durable
admission, audit naming the pull source.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..config.sections import ListenerSettings
from ..db import IntakePath
from ..ingest.admit import Admission, Admitter, ReceivedFile
from ..ingest.contexts import storage_sop_classes
from ..ingest.receive import IntakeInfo, Receiver
from ..ingest.spool import SpoolFile
from ..ingest.status import StoreStatus
from ..ingest.validate import InstanceLimits
from ..runtime import Runtime

log = logging.getLogger(__name__)

#: The spool sub-folder of pulled instances (the listener sweeps only its own sub-folder).
PULL_SPOOL = "pull"


@dataclass(frozen=True)
class PullIntake:
    """From which source a pulled instance came: recorded with it and with any refusal.

    ``sender`` becomes the slide's source AE (routing of results by caller rule): the PACS's
    AE title for a DIMSE source, the source's name for a DICOMweb one. ``remote``: its URL or
    AE@host:port.
    """

    source: str
    sender: str
    remote: str
    quiet_seconds: float | None = None

    def details(self) -> dict[str, str]:
        return {"intake": "pull", "source": self.source, "sender": self.sender, "peer": self.remote}


@dataclass(frozen=True)
class PullOutcome:
    """What admission made of one pulled instance: a DICOM status and why."""

    status: int
    reason: str
    admission: Admission | None = None

    @property
    def ok(self) -> bool:
        return self.status == StoreStatus.SUCCESS


class PullReceiver:
    """Admission for pulled instances over one runtime (shares an Admitter when given one,
    so admissions of one SOP Instance UID stay serialised with the listener's)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        admitter: Admitter | None = None,
        settings: ListenerSettings | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings or runtime.settings.listener
        self.limits = InstanceLimits.from_settings(self.settings)
        self.classes = frozenset(storage_sop_classes(self.settings.extra_sop_classes))
        self.admitter = admitter or Admitter(runtime)
        self.receiver = Receiver(runtime, settings=self.settings, admitter=self.admitter)
        self.spool_dir = runtime.store.spool_dir / PULL_SPOOL
        self.spool_dir.mkdir(parents=True, exist_ok=True)

    def new_spool(self) -> SpoolFile:
        """A spool file for one instance: hashed, counted against the size limit and the disk
        watermark as it is written (never held in memory)."""
        path = self.spool_dir / f"{uuid.uuid4().hex}.part"
        return SpoolFile(path, max_bytes=self.limits.max_instance_bytes, store=self.runtime.store)

    def receive(self, spool: SpoolFile, intake: PullIntake) -> PullOutcome:
        """Admit (or refuse, with an audit row) one complete spooled instance; consumes it."""
        try:
            return receive_pulled(self, spool, intake)
        finally:
            spool.discard()  # admitted files were moved into the store; the rest go


def receive_pulled(receiver: PullReceiver, spool: SpoolFile, intake: PullIntake) -> PullOutcome:
    """One pulled instance through the one receive path (``ingest.receive``), named as pulled
    from its source: the same validation, durability and audit as any other intake."""
    refusal = spool.refusal
    received = ReceivedFile(
        spool.path,
        spool.sha256 if refusal is None else "",
        spool.received_bytes,
        spool.wait_synced,
        refusal=refusal,
    )
    info = IntakeInfo(
        IntakePath.PULL,
        sender=intake.sender[:64],
        peer=f"{intake.source}: {intake.remote}"[:256],
        quiet_seconds=intake.quiet_seconds,
    )
    outcome = receiver.receiver.receive(received, info)
    if not outcome.ok:
        log.warning("pulled instance from %s refused: %s", intake.source, outcome.reason)
    return PullOutcome(outcome.status, outcome.reason, outcome.admission)


def remove_leftovers(spool_dir: Path, older_than_s: float = 24 * 3600.0) -> int:
    """Delete pull spool files a crash left behind (older than a day: none is in use)."""
    removed = 0
    cutoff = time.time() - older_than_s
    for path in spool_dir.glob("*.part"):
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
        except OSError:
            continue
    return removed
