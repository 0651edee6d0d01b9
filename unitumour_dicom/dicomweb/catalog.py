"""What DICOMweb can see: received slide instances and the SEG instances we made, from the
database (the one source of truth), never from a walk of the store.

Searches (QIDO-RS, PS3.18 10.6) run in SQL over one UNION of both kinds of instance, so that
paging stays in the database however large the archive grows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    distinct,
    func,
    literal,
    null,
    select,
    union_all,
)
from sqlalchemy.orm import Session, aliased

from ..db import Instance, InstanceState, Job, Result, ResultInstance, Slide
from ..store import is_valid_uid
from .errors import BadQueryError, ResourceNotFoundError

WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
ANN_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.91.1"  # Microscopy Bulk Simple Annotations
SC_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture (the key image)
MODALITY_OF_SOP_CLASS = {
    WSI_SOP_CLASS: "SM",
    SEG_SOP_CLASS: "SEG",
    SR_SOP_CLASS: "SR",
    ANN_SOP_CLASS: "ANN",
    SC_SOP_CLASS: "SM",
}

#: Query keys we match on, by keyword and by tag.
_KEYS = {
    "StudyInstanceUID": "0020000D",
    "SeriesInstanceUID": "0020000E",
    "SOPInstanceUID": "00080018",
    "SOPClassUID": "00080016",
    "PatientID": "00100020",
    "PatientName": "00100010",
    "AccessionNumber": "00080050",
    "StudyDate": "00080020",
    "Modality": "00080060",
    "ModalitiesInStudy": "00080061",
}
_TAG_TO_KEY = {tag: key for key, tag in _KEYS.items()}
_CONTROL_KEYS = {"limit", "offset", "includefield", "fuzzymatching"}
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100


@dataclass(frozen=True)
class InstanceRecord:
    """One instance DICOMweb can serve: where its file lies and what it belongs to."""

    kind: str  # "source" (received) or "result" (a SEG we made)
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str
    modality: str | None
    number_of_frames: int | None
    total_pixel_matrix_rows: int | None
    total_pixel_matrix_columns: int | None
    patient_id: str | None
    patient_name: str | None
    accession_number: str | None
    study_date: str | None
    slide_id: int | None
    path: str
    sha256: str


@dataclass(frozen=True)
class Query:
    """A QIDO-RS query after validation."""

    filters: dict[str, str]
    limit: int
    offset: int
    unsupported: tuple[str, ...]


def parse_query(params: Sequence[tuple[str, str]]) -> Query:
    """Validate query parameters; unknown attribute keys are reported, not matched."""
    filters: dict[str, str] = {}
    unsupported: list[str] = []
    limit, offset = DEFAULT_LIMIT, 0
    for raw_key, value in params:
        key = raw_key.strip()
        if key in _CONTROL_KEYS:
            if key in ("limit", "offset"):
                if not value.isdigit() or len(value) > 9:
                    raise BadQueryError(f"{key} must be a non-negative integer")
                if key == "limit":
                    limit = min(int(value), MAX_LIMIT)
                else:
                    offset = int(value)
            continue
        key = _TAG_TO_KEY.get(key.upper(), key)
        if key not in _KEYS:
            unsupported.append(raw_key[:64])
            continue
        if value == "" or value == "*":
            continue  # universal matching
        if len(value) > 4096:
            raise BadQueryError(f"the value of {key} is too long")
        filters[key] = value
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID"):
        if key in filters:
            _uid_list(filters[key], key)
    if "StudyDate" in filters:
        _date_range(filters["StudyDate"])
    return Query(filters, limit, offset, tuple(unsupported))


def _uid_list(value: str, key: str) -> list[str]:
    uids = [u.strip() for u in re.split(r"[,\\]", value) if u.strip()]
    for uid in uids:
        if not is_valid_uid(uid):
            raise BadQueryError(f"{key}: {uid[:70]!r} is not a valid UID")
    return uids


def _date_range(value: str) -> tuple[str | None, str | None]:
    if not re.fullmatch(r"(\d{8})?(-(\d{8})?)?", value) or value == "-":
        raise BadQueryError("StudyDate must be YYYYMMDD, or a range YYYYMMDD-YYYYMMDD")
    lo, dash, hi = value.partition("-")
    if not dash:
        return value, value
    return lo or None, hi or None


def _like(column: Any, pattern: str) -> ColumnElement[bool]:
    """DICOM wildcard matching (* and ?), case-insensitive on every backend."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    sql = escaped.replace("*", "%").replace("?", "_").lower()
    if "%" in sql or "_" in sql.replace("\\_", ""):
        return func.lower(column).like(sql, escape="\\")
    return func.lower(column) == pattern.lower()


def _modality_expr(sop_class: Any) -> Any:
    return case(
        *((sop_class == uid, literal(modality)) for uid, modality in MODALITY_OF_SOP_CLASS.items()),
        else_=null(),
    )


def _union() -> Any:
    """Every servable instance, both kinds, as one selectable with common columns."""
    newer = aliased(Instance)
    latest = ~(
        select(newer.id)
        .where(
            newer.sop_instance_uid == Instance.sop_instance_uid,
            newer.version > Instance.version,
            newer.state == InstanceState.STORED,
        )
        .exists()
    )
    source = (
        select(
            literal("source").label("kind"),
            Instance.study_instance_uid.label("study_uid"),
            Instance.series_instance_uid.label("series_uid"),
            Instance.sop_instance_uid.label("sop_uid"),
            Instance.sop_class_uid.label("sop_class_uid"),
            _modality_expr(Instance.sop_class_uid).label("modality"),
            Instance.number_of_frames.label("number_of_frames"),
            Instance.total_pixel_matrix_rows.label("tpm_rows"),
            Instance.total_pixel_matrix_columns.label("tpm_columns"),
            Slide.patient_id.label("patient_id"),
            Slide.patient_name.label("patient_name"),
            Slide.accession_number.label("accession_number"),
            Slide.study_date.label("study_date"),
            Slide.id.label("slide_id"),
            Instance.path.label("path"),
            Instance.sha256.label("sha256"),
        )
        .select_from(Instance)
        .outerjoin(Slide, Slide.id == Instance.slide_id)
        .where(Instance.state == InstanceState.STORED, latest)
    )
    result = (
        select(
            literal("result").label("kind"),
            Result.study_instance_uid.label("study_uid"),
            ResultInstance.series_instance_uid.label("series_uid"),
            ResultInstance.sop_instance_uid.label("sop_uid"),
            ResultInstance.sop_class_uid.label("sop_class_uid"),
            _modality_expr(ResultInstance.sop_class_uid).label("modality"),
            null().label("number_of_frames"),
            ResultInstance.rows.label("tpm_rows"),
            ResultInstance.columns.label("tpm_columns"),
            Slide.patient_id.label("patient_id"),
            Slide.patient_name.label("patient_name"),
            Slide.accession_number.label("accession_number"),
            Slide.study_date.label("study_date"),
            Slide.id.label("slide_id"),
            ResultInstance.path.label("path"),
            ResultInstance.sha256.label("sha256"),
        )
        .select_from(ResultInstance)
        .join(Result, Result.id == ResultInstance.result_id)
        .join(Job, Job.id == Result.job_id)
        .outerjoin(Slide, Slide.id == Job.slide_id)
    )
    return union_all(source, result).subquery("servable")


def _where(u: Any, filters: Mapping[str, str]) -> list[ColumnElement[bool]]:
    clauses: list[ColumnElement[bool]] = []
    uid_columns = {
        "StudyInstanceUID": u.c.study_uid,
        "SeriesInstanceUID": u.c.series_uid,
        "SOPInstanceUID": u.c.sop_uid,
        "SOPClassUID": u.c.sop_class_uid,
    }
    for key, column in uid_columns.items():
        if key in filters:
            clauses.append(column.in_(_uid_list(filters[key], key)))
    for key, column in (("PatientID", u.c.patient_id), ("PatientName", u.c.patient_name)):
        if key in filters:
            clauses.append(_like(column, filters[key]))
    if "AccessionNumber" in filters:
        clauses.append(u.c.accession_number == filters["AccessionNumber"])
    if "StudyDate" in filters:
        lo, hi = _date_range(filters["StudyDate"])
        if lo:
            clauses.append(u.c.study_date >= lo)
        if hi:
            clauses.append(u.c.study_date <= hi)
    modalities = filters.get("Modality") or filters.get("ModalitiesInStudy")
    if modalities:
        wanted = [m.strip().upper() for m in re.split(r"[,\\]", modalities) if m.strip()]
        if "ModalitiesInStudy" in filters:
            inner = _union()
            clauses.append(
                u.c.study_uid.in_(select(inner.c.study_uid).where(inner.c.modality.in_(wanted)))
            )
        else:
            clauses.append(u.c.modality.in_(wanted))
    return clauses


def _record(row: Any) -> InstanceRecord:
    return InstanceRecord(
        kind=row.kind,
        study_instance_uid=row.study_uid,
        series_instance_uid=row.series_uid,
        sop_instance_uid=row.sop_uid,
        sop_class_uid=row.sop_class_uid,
        modality=row.modality,
        number_of_frames=row.number_of_frames,
        total_pixel_matrix_rows=row.tpm_rows,
        total_pixel_matrix_columns=row.tpm_columns,
        patient_id=row.patient_id,
        patient_name=row.patient_name,
        accession_number=row.accession_number,
        study_date=row.study_date,
        slide_id=row.slide_id,
        path=row.path,
        sha256=row.sha256,
    )


def search_instances(
    session: Session,
    query: Query,
    *,
    study_uid: str | None = None,
    series_uid: str | None = None,
) -> list[InstanceRecord]:
    u = _union()
    filters = dict(query.filters)
    if study_uid:
        filters["StudyInstanceUID"] = study_uid
    if series_uid:
        filters["SeriesInstanceUID"] = series_uid
    stmt: Select[Any] = (
        select(u)
        .where(*_where(u, filters))
        .order_by(u.c.study_uid, u.c.series_uid, u.c.sop_uid)
        .limit(query.limit)
        .offset(query.offset)
    )
    return [_record(r) for r in session.execute(stmt)]


@dataclass(frozen=True)
class SeriesRecord:
    study_instance_uid: str
    series_instance_uid: str
    modality: str | None
    number_of_instances: int
    patient_id: str | None
    patient_name: str | None
    accession_number: str | None
    study_date: str | None


def search_series(
    session: Session, query: Query, *, study_uid: str | None = None
) -> list[SeriesRecord]:
    u = _union()
    filters = dict(query.filters)
    if study_uid:
        filters["StudyInstanceUID"] = study_uid
    stmt = (
        select(
            u.c.study_uid,
            u.c.series_uid,
            func.max(u.c.modality),
            func.count(),
            func.max(u.c.patient_id),
            func.max(u.c.patient_name),
            func.max(u.c.accession_number),
            func.max(u.c.study_date),
        )
        .where(*_where(u, filters))
        .group_by(u.c.study_uid, u.c.series_uid)
        .order_by(u.c.study_uid, u.c.series_uid)
        .limit(query.limit)
        .offset(query.offset)
    )
    return [SeriesRecord(*row) for row in session.execute(stmt)]


@dataclass(frozen=True)
class StudyRecord:
    study_instance_uid: str
    patient_id: str | None
    patient_name: str | None
    accession_number: str | None
    study_date: str | None
    number_of_series: int
    number_of_instances: int
    modalities: tuple[str, ...]


def search_studies(session: Session, query: Query) -> list[StudyRecord]:
    u = _union()
    stmt = (
        select(
            u.c.study_uid,
            func.max(u.c.patient_id),
            func.max(u.c.patient_name),
            func.max(u.c.accession_number),
            func.max(u.c.study_date),
            func.count(distinct(u.c.series_uid)),
            func.count(),
        )
        .where(*_where(u, query.filters))
        .group_by(u.c.study_uid)
        .order_by(u.c.study_uid)
        .limit(query.limit)
        .offset(query.offset)
    )
    rows = list(session.execute(stmt))
    if not rows:
        return []
    m = _union()
    modalities: dict[str, set[str]] = {}
    for study, modality in session.execute(
        select(m.c.study_uid, m.c.modality)
        .where(m.c.study_uid.in_([r[0] for r in rows]), m.c.modality.is_not(None))
        .distinct()
    ):
        modalities.setdefault(study, set()).add(modality)
    return [
        StudyRecord(
            uid,
            pid,
            name,
            accession,
            date,
            n_series,
            n_instances,
            modalities=tuple(sorted(modalities.get(uid, ()))),
        )
        for uid, pid, name, accession, date, n_series, n_instances in rows
    ]


def find_instances(
    session: Session,
    *,
    study_uid: str,
    series_uid: str | None = None,
    sop_uid: str | None = None,
) -> list[InstanceRecord]:
    """The instances under a WADO-RS path; 404 when there are none."""
    for uid, what in ((study_uid, "study"), (series_uid, "series"), (sop_uid, "instance")):
        if uid is not None and not is_valid_uid(uid):
            raise BadQueryError(f"{what} UID {uid[:70]!r} is not a valid UID")
    u = _union()
    clauses = [u.c.study_uid == study_uid]
    if series_uid:
        clauses.append(u.c.series_uid == series_uid)
    if sop_uid:
        clauses.append(u.c.sop_uid == sop_uid)
    stmt = select(u).where(and_(*clauses)).order_by(u.c.series_uid, u.c.sop_uid)
    records = [_record(r) for r in session.execute(stmt)]
    if not records:
        what = "instance" if sop_uid else "series" if series_uid else "study"
        raise ResourceNotFoundError(f"no such {what} here")
    return records


def slide_ids_of(
    session: Session, *, study_uids: Sequence[str] = (), series_uids: Sequence[str] = ()
) -> list[int]:
    """The slides (cases) that the given studies or series hold, received or made by us:
    what a search result showed, for the access audit."""
    u = _union()
    if study_uids:
        where = u.c.study_uid.in_(list(study_uids))
    elif series_uids:
        where = u.c.series_uid.in_(list(series_uids))
    else:
        return []
    stmt = select(u.c.slide_id).where(where, u.c.slide_id.is_not(None)).distinct()
    return sorted(session.scalars(stmt))


__all__ = [
    "InstanceRecord",
    "Query",
    "SeriesRecord",
    "StudyRecord",
    "find_instances",
    "parse_query",
    "search_instances",
    "search_series",
    "search_studies",
    "slide_ids_of",
]
