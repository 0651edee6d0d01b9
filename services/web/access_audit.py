"""The web app's side of the access audit (unitumour_dicom.access): who is the logged-in
user, from where is the client's address (as the server sees it: behind a proxy, as its
forwarded headers allow), what is each handler's :class:`AccessTarget`. The row is
committed before the data is sent: if it cannot be written, the data is not shown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from unitumour_dicom.access import AccessCoalescer, AccessTarget, record_access
from unitumour_dicom.db import AuditEvent, AuditEventName
from unitumour_dicom.dicomweb import Seen

from . import schemas
from .security import AuthUser

#: How many accesses the case page and the API record list, newest first.
ACCESS_LIST_LIMIT = 200


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def audit_access(request: Request, db: Session, user: AuthUser, target: AccessTarget) -> None:
    """Record (and commit) the access ``target`` by ``user`` through ``request``."""
    coalescer: AccessCoalescer | None = getattr(request.app.state, "access_coalescer", None)
    try:
        record_access(
            session=db,
            actor=user.username,
            user_id=user.id,
            source=client_address(request),
            target=target,
            coalescer=coalescer,
        )
        db.commit()
    except Exception:
        if coalescer is not None and target.coalesce_key is not None:
            coalescer.forget(user.username, target.coalesce_key)
        raise


def _of_cases(slide_ids: Sequence[int]) -> str:
    if len(slide_ids) == 1:
        return f"case {slide_ids[0]}"
    return f"{len(slide_ids)} cases"


def dicomweb_target(
    view: str,
    label: str,
    seen: Seen,
    *,
    coalesce: bool = False,
    extra: dict[str, Any] | None = None,
) -> AccessTarget:
    """The target of a DICOMweb answer: ``label`` (e.g. "series metadata") of what it
    showed; frame and bulk data requests are coalesced per instance."""
    key = f"{view}:{seen.sop_uids[0]}" if coalesce and len(seen.sop_uids) == 1 else None
    return AccessTarget(
        view=view,
        what=f"DICOMweb {label} ({_of_cases(seen.slide_ids)})",
        slide_ids=seen.slide_ids,
        patient_ids=seen.patient_ids,
        study_uids=seen.study_uids,
        series_uids=seen.series_uids,
        sop_uids=seen.sop_uids,
        extra=extra,
        coalesce_key=key,
    )


def case_target(view: str, label: str, slide: Any) -> AccessTarget:
    """The target of a page, picture or record of one case (``slide``: a Slide or SlideOut)."""
    return AccessTarget(
        view=view,
        what=f"{label} of case {slide.id}",
        slide_ids=(slide.id,),
        patient_ids=(slide.patient_id,) if slide.patient_id else (),
        study_uids=(slide.study_instance_uid,),
        series_uids=(slide.series_instance_uid,),
    )


def case_list_target(page: schemas.CasePage, label: str) -> AccessTarget:
    ids = [item.slide_id for item in page.items]
    return AccessTarget(
        view="cases.list",
        what=f"{label} ({_of_cases(ids)})",
        slide_ids=ids,
        patient_ids=[item.patient_id for item in page.items if item.patient_id],
    )


def access_log(
    db: Session, slide_id: int, limit: int = ACCESS_LIST_LIMIT
) -> list[schemas.AccessOut]:
    """Who looked at the case: its access rows, newest first."""
    rows = db.scalars(
        select(AuditEvent)
        .where(AuditEvent.slide_id == slide_id, AuditEvent.event == AuditEventName.ACCESS_VIEWED)
        .order_by(AuditEvent.at.desc(), AuditEvent.id.desc())
        .limit(limit)
    )
    out = []
    for row in rows:
        details = row.details or {}
        out.append(
            schemas.AccessOut(
                at=row.at,
                user=row.actor,
                view=str(details.get("view", "")),
                what=str(details.get("what", row.message)),
                source=details.get("source"),
            )
        )
    return out
