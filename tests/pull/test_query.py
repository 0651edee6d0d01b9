"""The poll's matching keys from the watermark and the source's filters, and the checks a
source's settings and answers must pass."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from unitumour_dicom.config import load_settings
from unitumour_dicom.config.sections import PullSettings, PullSourceSettings
from unitumour_dicom.errors import ConfigError, InvalidUIDError
from unitumour_dicom.pull import SeriesHit, series_query

pytestmark = pytest.mark.unittest

NOW = datetime(2026, 12, 3, 1, 30, tzinfo=UTC)


def _web(**extra: object) -> PullSourceSettings:
    return PullSourceSettings(name="web", kind="dicomweb", url="https://pacs/dicom-web", **extra)


def test_first_poll_reaches_back_the_initial_look_back() -> None:
    query = series_query(_web(), PullSettings(), watermark=None, now=NOW)
    assert query.keys() == {"Modality": "SM", "StudyDate": "20261126-"}


def test_later_polls_reach_back_the_overlap_before_the_watermark() -> None:
    settings = PullSettings(overlap_s=2 * 86400)
    query = series_query(_web(), settings, watermark=NOW, now=NOW)
    assert query.keys()["StudyDate"] == "20261201-"
    # no overlap: still the whole day of the watermark (dates are days)
    query = series_query(_web(), PullSettings(overlap_s=0), watermark=NOW, now=NOW)
    assert query.keys()["StudyDate"] == "20261203-"


def test_fixed_filters_narrow_the_window() -> None:
    source = _web(
        date_from="20261202",
        date_to="20261231",
        study_description="*H&E*",
        station_name="SCANNER?",
    )
    keys = series_query(source, PullSettings(), watermark=NOW, now=NOW).keys()
    assert keys == {
        "Modality": "SM",
        "StudyDate": "20261202-20261231",
        "StudyDescription": "*H&E*",
        "StationName": "SCANNER?",
    }
    # a fixed range that ended before the watermark never becomes "everything"
    old = _web(date_to="20200101")
    assert series_query(old, PullSettings(), watermark=NOW, now=NOW).study_date == (
        "20200101-20200101"
    )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "dicomweb"}, "kind dicomweb needs url"),
        ({"kind": "dicomweb", "url": "ftp://x"}, "String should match pattern"),
        ({"kind": "dicomweb", "url": "http://x", "auth": "basic"}, "needs username, password"),
        ({"kind": "dicomweb", "url": "http://x", "auth": "bearer"}, "needs token"),
        ({"kind": "dimse", "ae_title": "PACS", "host": "h"}, "needs ae_title, host, port"),
        ({"kind": "dimse", "ae_title": "A" * 17, "host": "h", "port": 104}, "1 to 16"),
        (
            {"kind": "dimse", "ae_title": "P", "host": "h", "port": 1, "date_from": "2026"},
            "date_from",
        ),
    ],
)
def test_a_source_without_its_fields_is_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PullSourceSettings(name="s", **fields)


def test_source_names_are_unique(tmp_path) -> None:  # type: ignore[no-untyped-def]
    source = {"name": "a", "kind": "dicomweb", "url": "http://x"}
    with pytest.raises(ConfigError, match="source names must be unique"):
        load_settings(data_dir=tmp_path, pull={"sources": [source, source]})


def test_a_remote_answer_is_checked_before_it_is_used() -> None:
    hit = SeriesHit.checked("1.2.3", "1.2.3.4", "12", "20261203")
    assert hit == SeriesHit("1.2.3", "1.2.3.4", 12, "20261203")
    assert SeriesHit.checked("1.2", "1.3", "-1", "2026-12-03").instances is None
    assert SeriesHit.checked("1.2", "1.3", "many", None) == SeriesHit("1.2", "1.3")
    with pytest.raises(InvalidUIDError):
        SeriesHit.checked("1.2", "../../etc")
    with pytest.raises(InvalidUIDError):
        SeriesHit.checked(None, "1.2")


def test_the_remote_on_record_never_carries_a_password() -> None:
    source = PullSourceSettings(name="w", kind="dicomweb", url="https://u:pw@pacs:8443/dw/")
    assert source.remote == "https://pacs:8443/dw/"
    dimse = PullSourceSettings(name="d", kind="dimse", ae_title="PACS", host="pacs", port=104)
    assert dimse.remote == "PACS@pacs:104"
