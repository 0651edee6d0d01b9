"""The STOW-RS response (PS3.18 10.5.3): what was stored, what failed and why, in DICOM JSON
(PS3.18 F.2) or the Native DICOM Model XML (PS3.19 A.1), with the HTTP status it implies.

Every part of a request gets one entry: a stored instance in the Referenced SOP Sequence with
the URL to retrieve it, a refused one in the Failed SOP Sequence with the DIMSE failure status
that a C-STORE of the same bytes would have got (so a sender reads the same reasons by either
path); a part that is not a DICOM instance at all, and so has no UIDs, in Other Failures.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from .media import DICOM_JSON, parse_accept

DICOM_XML = "application/dicom+xml"
_NATIVE_MODEL_NS = "http://dicom.nema.org/PS3.19/models/NativeDICOM"

#: Warning statuses of C-STORE (PS3.4 B.2.3): stored, with something to say.
_WARNINGS = frozenset({0x0001, 0xB000, 0xB006, 0xB007})


@dataclass(frozen=True)
class StoredPart:
    """What became of one part of the request."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    status: int
    reason: str | None = None
    retrieve_url: str | None = None

    @property
    def stored(self) -> bool:
        return self.status == 0x0000 or self.status in _WARNINGS


def http_status(parts: Sequence[StoredPart]) -> int:
    """200 when every instance was stored without warning, 202 when some were stored and
    others failed or were stored with warnings, 409 when none could be stored."""
    if not parts or not any(p.stored for p in parts):
        return 409
    if all(p.status == 0x0000 for p in parts):
        return 200
    return 202


def response_dataset(parts: Sequence[StoredPart], *, study_url: str | None) -> Dataset:
    ds = Dataset()
    if study_url and any(p.stored for p in parts):
        ds.RetrieveURL = study_url
    failed = DicomSequence()
    referenced = DicomSequence()
    other = DicomSequence()
    for part in parts:
        if part.sop_instance_uid is None or part.sop_class_uid is None:
            item = Dataset()
            item.FailureReason = part.status
            other.append(item)
            continue
        item = Dataset()
        item.ReferencedSOPClassUID = part.sop_class_uid
        item.ReferencedSOPInstanceUID = part.sop_instance_uid
        if part.stored:
            if part.retrieve_url:
                item.RetrieveURL = part.retrieve_url
            if part.status != 0x0000:
                item.WarningReason = part.status
            referenced.append(item)
        else:
            item.FailureReason = part.status
            failed.append(item)
    if failed:
        ds.FailedSOPSequence = failed
    if referenced:
        ds.ReferencedSOPSequence = referenced
    if other:
        ds.OtherFailuresSequence = other
    return ds


def warning_headers(parts: Sequence[StoredPart], *, limit: int = 20) -> list[str]:
    """Why parts failed, in words, as HTTP Warning header values (PS3.18 8.2.3 lets a
    response carry them; the payload's Failure Reason holds only the status code)."""
    values = []
    for part in parts:
        if part.stored or not part.reason:
            continue
        who = part.sop_instance_uid or "a part without UIDs"
        text = f"{who}: 0x{part.status:04X} {part.reason}"
        text = "".join(c if 0x20 <= ord(c) < 0x7F and c != '"' else "?" for c in text)[:300]
        values.append(f'299 unitumour "{text}"')
        if len(values) == limit:
            break
    return values


def negotiate_response(accept: str | None) -> str:
    """DICOM JSON unless the client asks for XML (PS3.18 10.5.2: both must be offered)."""
    for r in parse_accept(accept):
        if r.matches(DICOM_JSON) or r.matches("application/json"):
            return DICOM_JSON
        if r.matches(DICOM_XML):
            return DICOM_XML
    return DICOM_JSON


def render(ds: Dataset, media_type: str) -> bytes:
    if media_type == DICOM_XML:
        return to_native_xml(ds).encode("utf-8")
    return json.dumps(ds.to_json_dict()).encode("utf-8")


def to_native_xml(ds: Dataset) -> str:
    """The PS3.19 Native DICOM Model of the few VRs a STOW-RS response holds (UI, UR, US, LO,
    SQ); anything else is refused rather than written wrongly."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f'<NativeDicomModel xmlns="{_NATIVE_MODEL_NS}">',
    ]
    _xml_elements(ds, lines)
    lines.append("</NativeDicomModel>")
    return "\n".join(lines) + "\n"


def _xml_elements(ds: Dataset, lines: list[str]) -> None:
    for element in ds:
        tag = f"{element.tag.group:04X}{element.tag.elem:04X}"
        head = (
            f'<DicomAttribute tag="{tag}" vr="{element.VR}" keyword={quoteattr(element.keyword)}>'
        )
        if element.VR == "SQ":
            lines.append(head)
            for number, item in enumerate(element.value, start=1):
                lines.append(f'<Item number="{number}">')
                _xml_elements(item, lines)
                lines.append("</Item>")
            lines.append("</DicomAttribute>")
        elif element.VR in ("UI", "UR", "US", "LO"):
            values = element.value if element.VM > 1 else [element.value]
            inner = "".join(
                f'<Value number="{n}">{escape(str(v))}</Value>' for n, v in enumerate(values, 1)
            )
            lines.append(head + inner + "</DicomAttribute>")
        else:
            raise ValueError(f"no XML rendering for VR {element.VR} ({element.keyword})")
