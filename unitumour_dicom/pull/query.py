"""What a poll asks a source for, and what a source answers, independent of the protocol.

A poll asks for slide series (Modality SM) of studies dated from the watermark minus the
overlap (or the initial look-back) on, narrowed by the source's fixed filters. DICOM dates
are days in the PACS's local time, so the range is by day and reaches back generously; series
already received are skipped by UID, which makes the overlap cost a query, not a transfer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..config.sections import PullSettings, PullSourceSettings
from ..errors import UniTumourError
from ..store import validate_uid

_DA = re.compile(r"^\d{8}$")


class PullError(UniTumourError):
    """A source could not be queried or a series could not be retrieved; the words say why."""


@dataclass(frozen=True)
class SeriesQuery:
    """The matching keys of one poll (DICOM attribute keywords to values)."""

    study_date: str | None
    study_description: str | None
    station_name: str | None
    modality: str = "SM"

    def keys(self) -> dict[str, str]:
        keys = {"Modality": self.modality}
        if self.study_date:
            keys["StudyDate"] = self.study_date
        if self.study_description:
            keys["StudyDescription"] = self.study_description
        if self.station_name:
            keys["StationName"] = self.station_name
        return keys


@dataclass(frozen=True)
class SeriesHit:
    """One series a source reported; ``instances`` is its count when the source said."""

    study_instance_uid: str
    series_instance_uid: str
    instances: int | None = None
    study_date: str | None = None

    @classmethod
    def checked(
        cls, study: object, series: object, instances: object = None, study_date: object = None
    ) -> SeriesHit:
        """A hit from a remote answer, its UIDs validated (they become URL and path parts)."""
        count: int | None = None
        try:
            count = int(str(instances)) if instances not in (None, "") else None
        except ValueError:
            count = None
        if count is not None and count < 0:
            count = None
        date = str(study_date) if study_date is not None and _DA.match(str(study_date)) else None
        return cls(
            validate_uid(str(study or ""), "Study Instance UID from the source"),
            validate_uid(str(series or ""), "Series Instance UID from the source"),
            count,
            date,
        )


def series_query(
    source: PullSourceSettings,
    settings: PullSettings,
    *,
    watermark: datetime | None,
    now: datetime,
) -> SeriesQuery:
    """The keys of a poll from ``watermark`` (None: the source's first poll)."""
    since = (
        watermark - timedelta(seconds=settings.overlap_s)
        if watermark is not None
        else now - timedelta(seconds=settings.initial_lookback_s)
    )
    lower = f"{since:%Y%m%d}"
    if source.date_from and source.date_from > lower:
        lower = source.date_from
    upper = source.date_to or ""
    if upper and upper < lower:
        # the fixed range ended before the watermark: ask for the one empty-ish day, never
        # for everything (an inverted range is an error at some PACSs)
        lower = upper
    return SeriesQuery(
        study_date=f"{lower}-{upper}",
        study_description=source.study_description,
        station_name=source.station_name,
    )
