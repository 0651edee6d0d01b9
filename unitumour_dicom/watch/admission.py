"""The watched folder's one call into the intake path (the switch point for the lead's
``receive_instance``): a converted file is admitted exactly as ``unitumour process`` admits a
file and the listener a received instance (spooled with its digest, header read, validated,
stored, recorded), named as coming from the watched folder."""

from __future__ import annotations

from pathlib import Path

from ..ingest import Admission, Admitter, InstanceLimits, InstanceSummary, Sender
from ..ingest.contexts import storage_sop_classes
from ..ingest.header import read_instance_header
from ..ingest.validate import validate_instance
from ..pipeline.local import _admit_file
from ..runtime import Runtime


class ConvertedAdmission:
    """Checks and admits the instances of one runtime's converted files."""

    def __init__(self, runtime: Runtime) -> None:
        listener = runtime.settings.listener
        self.runtime = runtime
        self.admitter = Admitter(runtime)
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
        sender = Sender(None, source_name, hold_seconds)
        return _admit_file(
            path, self.runtime, self.admitter, self.limits, self.classes, sender=sender
        )
