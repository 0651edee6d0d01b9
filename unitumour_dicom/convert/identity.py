"""Who a vendor file belongs to: patient, study and container attributes for its DICOM.

A vendor file carries no patient or study; the scanner's site supplies them, in order of
preference: a sidecar beside the file (same stem, ``.json`` or ``.csv``), a file-name pattern
with named groups (``watch.filename_pattern``), or nothing, in which case the slide gets a
generated identity that no one can mistake for a real patient ("UNIDENTIFIED^<stem>", a
patient ID derived from the file's digest) and the audit says so.

Every value is checked here, by the rules of its DICOM value representation, before it
reaches the converter: a sidecar with an unknown key or a malformed date fails the file with
that reason rather than writing a wrong header (strict when writing).
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import UniTumourError

#: Sidecars larger than this are refused unread (a sidecar is a handful of fields).
MAX_SIDECAR_BYTES = 64 * 1024

_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
_DATE = re.compile(r"^\d{8}$")
_TIME = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")
_IS = re.compile(r"^[+-]?\d{1,12}$")

#: The attributes a sidecar or a file-name pattern may set: keyword -> (VR, max length).
ALLOWED_ATTRIBUTES: dict[str, tuple[str, int]] = {
    "PatientID": ("LO", 64),
    "PatientName": ("PN", 64),
    "PatientBirthDate": ("DA", 8),
    "PatientSex": ("CS", 16),
    "AccessionNumber": ("SH", 16),
    "StudyInstanceUID": ("UI", 64),
    "StudyID": ("SH", 16),
    "StudyDate": ("DA", 8),
    "StudyTime": ("TM", 16),
    "StudyDescription": ("LO", 64),
    "ReferringPhysicianName": ("PN", 64),
    "SeriesDescription": ("LO", 64),
    "SeriesNumber": ("IS", 12),
    "ContainerIdentifier": ("LO", 64),
    "InstitutionName": ("LO", 64),
}


class IdentityError(UniTumourError):
    """A sidecar or a file-name match holds a key or a value we will not write."""


@dataclass(frozen=True)
class SlideIdentity:
    """The attributes to write, where they came from, and what the audit must be told."""

    attributes: dict[str, str]
    source: str  # "sidecar:<name>", "filename-pattern" or "generated"
    warnings: list[str] = field(default_factory=list)

    @property
    def generated(self) -> bool:
        return self.source == "generated"


def check_value(keyword: str, value: object) -> str:
    """The value as it will be written, or IdentityError saying what is wrong with it."""
    if keyword not in ALLOWED_ATTRIBUTES:
        raise IdentityError(
            f"{keyword!r} is not an attribute a sidecar may set "
            f"(allowed: {', '.join(sorted(ALLOWED_ATTRIBUTES))})"
        )
    vr, max_len = ALLOWED_ATTRIBUTES[keyword]
    text = str(value).strip()
    if len(text) > max_len:
        raise IdentityError(f"{keyword} is longer than {max_len} characters")
    if any(ord(c) < 0x20 or c == "\\" for c in text):
        raise IdentityError(f"{keyword} holds a control character or a backslash")
    checks = {
        "UI": (_UID, "a UID (digits and dots)"),
        "DA": (_DATE, "a date YYYYMMDD"),
        "TM": (_TIME, "a time HHMMSS"),
        "IS": (_IS, "an integer"),
    }
    if vr in checks and text:
        pattern, what = checks[vr]
        if not pattern.match(text):
            raise IdentityError(f"{keyword} {text!r} is not {what}")
    if vr == "DA" and text:
        try:
            datetime.strptime(text, "%Y%m%d")
        except ValueError:
            raise IdentityError(f"{keyword} {text!r} is not a date YYYYMMDD") from None
    if vr == "CS" and text and not re.match(r"^[A-Z0-9_ ]+$", text):
        raise IdentityError(f"{keyword} {text!r} is not a code string (A-Z, 0-9, _)")
    if vr == "PN" and text.count("^") > 4:
        raise IdentityError(f"{keyword} has more than five name components")
    return text


def checked(attributes: dict[str, object]) -> dict[str, str]:
    return {k: check_value(k, v) for k, v in attributes.items() if str(v).strip() != ""}


def source_stem(path: Path) -> str:
    """The file's name without its extension (and without ``.ome`` of ``.ome.tiff``)."""
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def sidecar_of(path: Path) -> Path | None:
    """The sidecar beside ``path`` (``<stem>.json`` before ``<stem>.csv``), if there is one."""
    stem = source_stem(path)
    for suffix in (".json", ".csv"):
        candidate = path.with_name(stem + suffix)
        if candidate.is_file():
            return candidate
    return None


def read_sidecar(path: Path) -> dict[str, str]:
    """A JSON object of keywords, or a CSV of a header row of keywords and one row of values."""
    size = path.stat().st_size
    if size > MAX_SIDECAR_BYTES:
        raise IdentityError(f"sidecar {path.name} is {size} bytes, over {MAX_SIDECAR_BYTES}")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IdentityError(f"sidecar {path.name} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(
            isinstance(v, str | int | float) for v in data.values()
        ):
            raise IdentityError(f"sidecar {path.name} must be one object of keyword: value")
        return checked(data)
    rows = list(csv.reader(io.StringIO(text)))
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if len(rows) != 2 or len(rows[0]) != len(rows[1]):
        raise IdentityError(
            f"sidecar {path.name} must hold a header row of keywords and one row of values"
        )
    return checked({k.strip(): v for k, v in zip(rows[0], rows[1], strict=True)})


def check_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled file-name pattern; each named group must be an allowed attribute."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise IdentityError(f"file-name pattern {pattern!r} does not compile: {exc}") from exc
    unknown = set(compiled.groupindex) - set(ALLOWED_ATTRIBUTES)
    if unknown or not compiled.groupindex:
        raise IdentityError(
            f"file-name pattern {pattern!r}: named groups must be attributes "
            f"({', '.join(sorted(ALLOWED_ATTRIBUTES))}); not {', '.join(sorted(unknown))}"
        )
    return compiled


def _safe_component(text: str, limit: int) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:limit] or "slide"


def generated_identity(path: Path, sha256: str) -> dict[str, str]:
    """A clearly marked identity for a file nobody described: never a real patient's."""
    stem = _safe_component(source_stem(path), 40)
    return {
        "PatientID": f"UNIDENTIFIED-{sha256[:16]}",
        "PatientName": f"UNIDENTIFIED^{stem}",
        "ContainerIdentifier": stem,
        "StudyDescription": "Converted vendor file without identity (watched folder)",
    }


def resolve_identity(
    path: Path, sha256: str, *, filename_pattern: str | None, sidecar: Path | None = None
) -> SlideIdentity:
    """The identity of ``path``: ``sidecar`` (or the one beside it), the pattern, or generated.

    A sidecar that lacks PatientID and PatientName gets the generated ones for those two,
    with a warning; so does a pattern match."""
    sidecar = sidecar if sidecar is not None else sidecar_of(path)
    attributes: dict[str, str] = {}
    source = ""
    if sidecar is not None:
        attributes = read_sidecar(sidecar)
        source = f"sidecar:{sidecar.name}"
    elif filename_pattern:
        match = check_pattern(filename_pattern).fullmatch(source_stem(path))
        if match is not None:
            attributes = checked({k: v for k, v in match.groupdict().items() if v})
            source = "filename-pattern"
    generated = generated_identity(path, sha256)
    if not attributes:
        return SlideIdentity(
            generated,
            "generated",
            [
                f"{path.name}: no sidecar and no file-name match; the slide is written as "
                f"patient {generated['PatientName']} ({generated['PatientID']})"
            ],
        )
    warnings = []
    missing = [k for k in ("PatientID", "PatientName") if k not in attributes]
    if missing:
        for key in missing:
            attributes[key] = generated[key]
        warnings.append(
            f"{path.name}: {source} gives no {' and no '.join(missing)}; generated "
            f"{', '.join(f'{k}={attributes[k]}' for k in missing)}"
        )
    attributes.setdefault("ContainerIdentifier", generated["ContainerIdentifier"])
    return SlideIdentity(attributes, source, warnings)
