"""DICOM UID validation: the only gate through which network identifiers become paths."""

from __future__ import annotations

import re

from ..errors import InvalidUIDError

# PS3.5 9.1: components of digits separated by periods, no leading zero in a component of more
# than one digit, 64 characters at most.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
MAX_UID_LENGTH = 64


def is_valid_uid(value: object) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_UID_LENGTH
        and _UID_RE.fullmatch(value) is not None
    )


def validate_uid(value: object, what: str = "UID") -> str:
    """Return ``value`` if it is a valid DICOM UID, else raise InvalidUIDError saying why."""
    if not isinstance(value, str):
        raise InvalidUIDError(f"{what} must be a string, not {type(value).__name__}")
    shown = value if len(value) <= 80 else value[:77] + "..."
    if not value:
        raise InvalidUIDError(f"{what} is empty")
    if len(value) > MAX_UID_LENGTH:
        raise InvalidUIDError(
            f"{what} {shown!r} has {len(value)} characters; DICOM allows at most {MAX_UID_LENGTH}"
        )
    if _UID_RE.fullmatch(value) is None:
        raise InvalidUIDError(
            f"{what} {shown!r} is not a DICOM UID (digits in dot-separated components, "
            "no leading zeros); refused"
        )
    return value
