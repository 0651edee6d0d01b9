"""The DICOM statuses and association rejections the listener answers, by name.

Storage statuses are PS3.4 Annex B.2.3 (C-STORE) and PS3.7 Annex C; association rejections are
PS3.8 9.3.4 (A-ASSOCIATE-RJ result, source and reason/diagnostic).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class StoreStatus(IntEnum):
    """C-STORE response statuses."""

    SUCCESS = 0x0000
    #: Refused: Out of Resources (disk below its watermark, database unreachable, size limits).
    OUT_OF_RESOURCES = 0xA700
    #: Error: Data Set does not match SOP Class (wrong class, required attributes missing).
    DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    #: Error: Cannot understand (unreadable or truncated data set, invalid UIDs).
    CANNOT_UNDERSTAND = 0xC000
    #: Refused: SOP Class not supported.
    SOP_CLASS_NOT_SUPPORTED = 0x0122


@dataclass(frozen=True)
class AssociationRejection:
    """The three fields of an A-ASSOCIATE-RJ and the words we log and audit with them."""

    result: int
    source: int
    diagnostic: int
    name: str

    @property
    def as_tuple(self) -> tuple[int, int, int]:
        return (self.result, self.source, self.diagnostic)


_PERMANENT, _TRANSIENT = 0x01, 0x02
_SERVICE_USER, _SERVICE_PROVIDER_ACSE, _SERVICE_PROVIDER_PRESENTATION = 0x01, 0x02, 0x03

#: The calling AE title (or the address it called from) is not on the allowed list.
CALLING_AE_NOT_RECOGNIZED = AssociationRejection(
    _PERMANENT, _SERVICE_USER, 0x03, "calling-AE-title-not-recognized"
)
#: The called AE title is not ours.
CALLED_AE_NOT_RECOGNIZED = AssociationRejection(
    _PERMANENT, _SERVICE_USER, 0x07, "called-AE-title-not-recognized"
)
#: The maximum number of concurrent associations is reached (try again later).
LOCAL_LIMIT_EXCEEDED = AssociationRejection(
    _TRANSIENT, _SERVICE_PROVIDER_PRESENTATION, 0x02, "local-limit-exceeded"
)
#: We cannot record the association (database unreachable) or are shutting down.
TEMPORARY_CONGESTION = AssociationRejection(
    _TRANSIENT, _SERVICE_PROVIDER_PRESENTATION, 0x01, "temporary-congestion"
)

_KNOWN = {
    r.as_tuple: r
    for r in (
        CALLING_AE_NOT_RECOGNIZED,
        CALLED_AE_NOT_RECOGNIZED,
        LOCAL_LIMIT_EXCEEDED,
        TEMPORARY_CONGESTION,
    )
}


def describe_rejection(result: int, source: int, diagnostic: int) -> str:
    """Words for a rejection that pynetdicom itself sent, for the audit row."""
    known = _KNOWN.get((result, source, diagnostic))
    if known is not None:
        return known.name
    return f"result 0x{result:02X}, source 0x{source:02X}, diagnostic 0x{diagnostic:02X}"
