"""Cases (one slide each) as the audit pages and the API show them: a filtered, paged list,
and everything on record about one case."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session, aliased, selectinload

from unitumour_dicom.db import (
    Association,
    AuditEvent,
    AuditEventName,
    Delivery,
    Job,
    JobState,
    ModelVersion,
    Result,
    Slide,
    SlideState,
)
from unitumour_dicom.errors import NotFoundError  # no such case, job or delivery

from . import schemas

CASE_STATES = sorted({s.value for s in SlideState} | {s.value for s in JobState})
MAX_PAGE_SIZE = 200
AUDIT_LIMIT = 1000
_DATE = re.compile(r"^\d{8}$")


@dataclass(frozen=True)
class CaseFilters:
    """Search and filters of the case list; every field optional."""

    q: str | None = None  # patient ID or name, accession number (substring, any case)
    patient_id: str | None = None
    accession_number: str | None = None
    study_date_from: str | None = None  # YYYYMMDD
    study_date_to: str | None = None
    state: str | None = None  # a case state: slide state or latest job state
    source_ae: str | None = None
    model_id: int | None = None  # a model that ran on the case (any of its jobs)
    page: int = 1
    page_size: int = 50

    def __post_init__(self) -> None:
        for name in ("study_date_from", "study_date_to"):
            value = getattr(self, name)
            if value and not _DATE.match(value):
                raise ValueError(f"{name} must be a date as YYYYMMDD")
        if self.state and self.state not in CASE_STATES:
            raise ValueError(f"state must be one of {', '.join(CASE_STATES)}")
        if self.page < 1 or not 1 <= self.page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page >= 1 and page_size in 1..{MAX_PAGE_SIZE}")


def _normalise_date(value: str | None) -> str | None:
    if not value:
        return None
    return value.replace("-", "").strip() or None


def filters_from_query(
    q: str | None,
    patient_id: str | None,
    accession_number: str | None,
    study_date_from: str | None,
    study_date_to: str | None,
    state: str | None,
    source_ae: str | None,
    model_id: int | None,
    page: int,
    page_size: int,
) -> CaseFilters:
    """Raises ValueError with a message a person can act on."""
    return CaseFilters(
        q=q or None,
        patient_id=patient_id or None,
        accession_number=accession_number or None,
        study_date_from=_normalise_date(study_date_from),
        study_date_to=_normalise_date(study_date_to),
        state=state or None,
        source_ae=source_ae or None,
        model_id=model_id,
        page=page,
        page_size=page_size,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _latest_jobs() -> Any:
    return select(Job.slide_id, func.max(Job.id).label("job_id")).group_by(Job.slide_id).subquery()


def _case_query(filters: CaseFilters) -> Select[*tuple[Any, ...]]:
    latest = _latest_jobs()
    case_state = func.coalesce(Job.state, Slide.state)
    stmt = (
        select(Slide, Job, ModelVersion, Result, case_state.label("case_state"))
        .select_from(Slide)
        .outerjoin(latest, latest.c.slide_id == Slide.id)
        .outerjoin(Job, Job.id == latest.c.job_id)
        .outerjoin(ModelVersion, ModelVersion.id == Job.model_id)
        .outerjoin(Result, Result.job_id == Job.id)
    )
    if filters.q:
        pattern = f"%{_escape_like(filters.q.lower())}%"
        stmt = stmt.where(
            or_(
                func.lower(Slide.patient_id).like(pattern, escape="\\"),
                func.lower(Slide.patient_name).like(pattern, escape="\\"),
                func.lower(Slide.accession_number).like(pattern, escape="\\"),
            )
        )
    if filters.patient_id:
        stmt = stmt.where(Slide.patient_id == filters.patient_id)
    if filters.accession_number:
        stmt = stmt.where(Slide.accession_number == filters.accession_number)
    if filters.study_date_from:
        stmt = stmt.where(Slide.study_date >= filters.study_date_from)
    if filters.study_date_to:
        stmt = stmt.where(Slide.study_date <= filters.study_date_to)
    if filters.source_ae:
        stmt = stmt.where(Slide.source_ae == filters.source_ae)
    if filters.state:
        stmt = stmt.where(case_state == filters.state)
    if filters.model_id is not None:
        other = aliased(Job)
        ran = select(other.id).where(other.slide_id == Slide.id, other.model_id == filters.model_id)
        stmt = stmt.where(ran.exists())
    return stmt


def list_cases(session: Session, filters: CaseFilters) -> schemas.CasePage:
    stmt = _case_query(filters)
    total = session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = session.execute(
        stmt.order_by(Slide.last_received_at.desc(), Slide.id.desc())
        .limit(filters.page_size)
        .offset((filters.page - 1) * filters.page_size)
    ).all()
    result_ids = [r.Result.id for r in rows if r.Result is not None]
    by_result: dict[int, dict[str, int]] = defaultdict(dict)
    if result_ids:
        for result_id, state, n in session.execute(
            select(Delivery.result_id, Delivery.state, func.count())
            .where(Delivery.result_id.in_(result_ids))
            .group_by(Delivery.result_id, Delivery.state)
        ):
            by_result[result_id][state] = n
    items = []
    for slide, job, model, result, case_state in rows:
        items.append(
            schemas.CaseSummary(
                slide_id=slide.id,
                patient_id=slide.patient_id,
                patient_name=slide.patient_name,
                accession_number=slide.accession_number,
                study_date=slide.study_date,
                study_instance_uid=slide.study_instance_uid,
                series_instance_uid=slide.series_instance_uid,
                source_ae=slide.source_ae,
                slide_state=slide.state,
                case_state=case_state,
                latest_job_id=job.id if job else None,
                model=f"{model.name} {model.version}" if model else None,
                tumour_area_mm2=result.tumour_area_mm2 if result else None,
                tissue_area_mm2=result.tissue_area_mm2 if result else None,
                deliveries=dict(by_result.get(result.id, {})) if result else {},
                first_received_at=slide.first_received_at,
                last_received_at=slide.last_received_at,
            )
        )
    return schemas.CasePage(
        items=items, total=total, page=filters.page, page_size=filters.page_size
    )


def list_models(session: Session) -> list[ModelVersion]:
    return list(session.scalars(select(ModelVersion).order_by(ModelVersion.name, ModelVersion.id)))


def list_source_aes(session: Session) -> list[str]:
    return [
        ae
        for ae in session.scalars(
            select(Slide.source_ae).where(Slide.source_ae.is_not(None)).distinct()
        )
        if ae
    ]


def latest_result(slide: Slide) -> tuple[Job | None, Result | None]:
    """The newest job that has a result, and that result."""
    for job in sorted(slide.jobs, key=lambda j: j.id, reverse=True):
        if job.result is not None:
            return job, job.result
    return None, None


def load_slide(session: Session, slide_id: int) -> Slide:
    slide = session.scalar(
        select(Slide)
        .where(Slide.id == slide_id)
        .options(
            selectinload(Slide.instances),
            selectinload(Slide.jobs).selectinload(Job.model),
            selectinload(Slide.jobs).selectinload(Job.result).selectinload(Result.instances),
            selectinload(Slide.jobs)
            .selectinload(Job.result)
            .selectinload(Result.deliveries)
            .selectinload(Delivery.attempts_log),
        )
    )
    if slide is None:
        raise NotFoundError(f"no case {slide_id}")
    return slide


def case_detail(session: Session, slide_id: int) -> schemas.CaseDetail:
    slide = load_slide(session, slide_id)
    jobs = sorted(slide.jobs, key=lambda j: j.id)
    latest_job = jobs[-1] if jobs else None
    case_state = latest_job.state if latest_job else slide.state
    result_job, result = latest_result(slide)
    deliveries = [d for j in jobs if j.result for d in j.result.deliveries]
    association_ids = {i.association_id for i in slide.instances if i.association_id}
    calling = {}
    if association_ids:
        calling = dict(
            session.execute(
                select(Association.id, Association.calling_ae).where(
                    Association.id.in_(association_ids)
                )
            ).all()
        )
    instances = []
    for inst in sorted(slide.instances, key=lambda i: (i.received_at, i.id)):
        out = schemas.InstanceOut.model_validate(inst)
        out.calling_ae = calling.get(inst.association_id) if inst.association_id else None
        instances.append(out)
    job_ids = [j.id for j in jobs]
    delivery_ids = [d.id for d in deliveries]
    conditions = [AuditEvent.slide_id == slide.id]
    if job_ids:
        conditions.append(AuditEvent.job_id.in_(job_ids))
    if delivery_ids:
        conditions.append(AuditEvent.delivery_id.in_(delivery_ids))
    audit = list(
        session.scalars(
            select(AuditEvent)
            .where(or_(*conditions), AuditEvent.event != AuditEventName.ACCESS_VIEWED)
            .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
            .limit(AUDIT_LIMIT)
        )
    )
    model = result_job.model if result_job and result_job.model else None
    if model is None:
        model = next((j.model for j in reversed(jobs) if j.model is not None), None)
    return schemas.CaseDetail(
        slide=schemas.SlideOut.model_validate(slide),
        case_state=case_state,
        instances=instances,
        jobs=[schemas.JobOut.model_validate(j) for j in reversed(jobs)],
        model=schemas.ModelCardOut.model_validate(model) if model else None,
        result=schemas.ResultOut.model_validate(result) if result else None,
        deliveries=[schemas.DeliveryOut.model_validate(d) for d in deliveries],
        audit=[schemas.AuditOut.model_validate(a) for a in audit],
    )


def model_card_rows(card: dict[str, Any]) -> list[tuple[str, Any]]:
    """The card's top-level fields in a stable order, for the page's table."""
    first = ["name", "version", "family", "architecture", "intended_use", "training", "metrics"]
    keys = [k for k in first if k in card] + sorted(k for k in card if k not in first)
    return [(k, card[k]) for k in keys]


__all__ = [
    "CASE_STATES",
    "CaseFilters",
    "NotFoundError",
    "case_detail",
    "filters_from_query",
    "latest_result",
    "list_cases",
    "list_models",
    "list_source_aes",
    "load_slide",
    "model_card_rows",
]
