"""UID validation: the gate between network identifiers and file paths."""

import pytest

from unitumour_dicom.errors import InvalidUIDError
from unitumour_dicom.store import is_valid_uid, validate_uid

pytestmark = pytest.mark.unittest

GOOD = ["1.2.840.10008.5.1.4.1.1.77.1.6", "2.25.329800735698586629295641978511506172918", "0.0"]


@pytest.mark.parametrize("uid", GOOD)
def test_valid_uids_pass(uid: str) -> None:
    assert validate_uid(uid) == uid
    assert is_valid_uid(uid)


@pytest.mark.parametrize(
    ("uid", "message"),
    [
        ("../../etc", "is not a DICOM UID"),
        ("1.2/../../3", "is not a DICOM UID"),
        ("1.2.3\x00", "is not a DICOM UID"),
        ("1.2.03", "is not a DICOM UID"),  # leading zero
        ("1..2", "is not a DICOM UID"),
        ("1.2.", "is not a DICOM UID"),
        (".1.2", "is not a DICOM UID"),
        ("12", "is not a DICOM UID"),  # one component
        ("1.2.3 ", "is not a DICOM UID"),  # padding must be stripped by the reader, not here
        ("1.2.abc", "is not a DICOM UID"),
        ("1." + "2" * 68, "has 70 characters; DICOM allows at most 64"),
        ("", "is empty"),
    ],
)
def test_hostile_uids_are_refused_with_a_reason(uid: str, message: str) -> None:
    assert not is_valid_uid(uid)
    with pytest.raises(InvalidUIDError, match=message):
        validate_uid(uid, "SOP Instance UID")


def test_non_strings_are_refused() -> None:
    with pytest.raises(InvalidUIDError, match="must be a string"):
        validate_uid(None)
    assert not is_valid_uid(1.2)
