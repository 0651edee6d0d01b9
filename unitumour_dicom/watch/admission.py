"""The watched folder's one call into the intake path: a converted file goes through the one
receive path (``ingest.receive``) as a C-STORE, STOW-RS or ``unitumour process`` instance does
(spooled with its digest, header read, validated, stored, recorded), named as coming from the
watched folder."""

from __future__ import annotations

from pathlib import Path

from ..db import IntakePath
from ..errors import InvalidInstanceError
from ..ingest import Admission, InstanceLimits, InstanceSummary
from ..ingest.contexts import storage_sop_classes
from ..ingest.header import read_instance_header
from ..ingest.receive import IntakeInfo, Receiver
from ..ingest.validate import validate_instance
from ..runtime import Runtime


class ConvertedAdmission:
    """Checks and admits the instances of one runtime's converted files."""

    def __init__(self, runtime: Runtime) -> None:
        listener = runtime.settings.listener
        self.runtime = runtime
        self.receiver = Receiver(runtime)
        self.limits = InstanceLimits.from_settings(listener)
        self.classes = storage_sop_classes(listener.extra_sop_classes)

    def check(self, path: Path) -> InstanceSummary:
        """Validate a converted file without admitting it (InvalidInstanceError if bad): every
        file of a conversion is checked before the first is admitted."""
        header = read_instance_header(
            path,
            scratch_dir=self.runtime.store.spool_dir,
            max_inflated_bytes=self.limits.max_instance_bytes,
        )
        ds = header.dataset
        return validate_instance(
            header,
            command_sop_class_uid=str(ds.get("SOPClassUID", "")),
            command_sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
            allowed_sop_classes=self.classes,
            limits=self.limits,
        )

    def admit(self, path: Path, *, source_name: str, hold_seconds: float) -> Admission:
        """Admit one converted file; its slide is held ``hold_seconds`` (the watcher settles it
        at once when the whole conversion is in, so a crash midway never settles half)."""
        self.runtime.store.check_space(path.stat().st_size)  # StoreFullError: try later
        intake = IntakeInfo(
            IntakePath.WATCHED_FOLDER, sender=source_name, quiet_seconds=hold_seconds
        )
        outcome = self.receiver.receive(path, intake)
        if outcome.admission is None:
            raise InvalidInstanceError(outcome.reason, outcome.status)
        return outcome.admission
