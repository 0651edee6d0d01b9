"""This installation as Contributing Equipment of a result object, and the creation times
that make a retried job's objects byte-identical."""

from __future__ import annotations

import platform
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import highdicom as hd
from pydicom import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import UID

from ..config.sections import SegSettings
from ..errors import SegmentationError
from ..seg.header import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME, software_versions
from .identity import ModelIdentity

_LO_MAX = 64


def device_serial_number(settings: SegSettings) -> str:
    """As the SEG: the setting, else this host's name."""
    return (settings.device_serial_number or platform.node() or "unknown")[:_LO_MAX]


def all_software_versions(identity: ModelIdentity) -> list[str]:
    return [*software_versions(), f"{identity.name} {identity.version}"[:_LO_MAX]]


def processing_equipment(
    settings: SegSettings, identity: ModelIdentity, when: datetime, what: str
) -> hd.ContributingEquipment:
    """This installation as Processing Equipment (DCM 109102), naming the model."""
    return hd.ContributingEquipment(
        manufacturer=settings.manufacturer,
        purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=settings.manufacturer_model_name,
        software_versions=all_software_versions(identity),
        device_serial_number=device_serial_number(settings),
        institution_name=settings.institution_name,
        contribution_datetime=when,
        contribution_description=f"{what} by {identity.name} {identity.version}"[:_LO_MAX],
    )


def fix_times(ds: Dataset, when: datetime) -> None:
    """Creation, series and contribution times follow the content time (the job's), so the
    same inputs give the same bytes; and our implementation in the file meta."""
    ds.InstanceCreationDate = when.strftime("%Y%m%d")
    ds.InstanceCreationTime = when.strftime("%H%M%S.%f")
    ds.SeriesDate = when.strftime("%Y%m%d")
    ds.SeriesTime = when.strftime("%H%M%S.%f")
    ds.TimezoneOffsetFromUTC = when.strftime("%z") or "+0000"
    for item in ds.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = when.strftime("%Y%m%d%H%M%S.%f%z")
    ds.file_meta.ImplementationClassUID = UID(IMPLEMENTATION_CLASS_UID)
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME


@contextmanager
def highdicom_refusal(what: str) -> Iterator[None]:
    """highdicom checks every input in its constructors: its refusal becomes our
    SegmentationError, naming the object, so a job fails with a reason and not a traceback
    from inside a library."""
    try:
        yield
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise SegmentationError(f"highdicom refused the {what}: {exc}") from exc
