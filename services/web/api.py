"""The JSON API (described at /api/openapi.json): the same data and actions as the pages."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from unitumour_dicom import deliver, jobs
from unitumour_dicom.db.types import utcnow

from . import actions, cases, schemas
from .access_audit import access_log, audit_access, case_list_target, case_target
from .auth_flow import attempt_login, log_out
from .deps import ApiAdmin, ApiUser, ApiUserCsrf, Ctx, Db, Id
from .overlay import overlay_response
from .security import request_session

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": schemas.ErrorOut, "description": "Not logged in."},
}
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    403: {"model": schemas.ErrorOut, "description": "Not an admin, or no CSRF token."},
    404: {"model": schemas.ErrorOut, "description": "No such object."},
    409: {"model": schemas.ErrorOut, "description": "Does not fit the current state."},
}

router = APIRouter(prefix="/api", tags=["api"])


@router.post(
    "/login",
    response_model=schemas.Me,
    responses={401: {"model": schemas.ErrorOut, "description": "Wrong credentials."}},
)
def login(request: Request, ctx: Ctx, body: schemas.LoginRequest) -> schemas.Me:
    """Log in; the answer sets the session cookie and gives the CSRF token for POSTs.

    A JSON body (never a form) keeps cross-site pages from logging a browser in unasked.
    """
    user, error = attempt_login(request, ctx, body.username, body.password)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, error or "log-in refused")
    return schemas.Me(
        username=user.username, role=user.role, csrf_token=request_session(request).csrf
    )


@router.post(
    "/logout",
    responses={**_ERRORS, 403: {"model": schemas.ErrorOut, "description": "No CSRF token."}},
)
def logout(request: Request, ctx: Ctx, user: ApiUserCsrf) -> dict[str, bool]:
    """End the session on the server (every copy of its cookie stops working); the cookie is
    replaced by an anonymous one. Needs the X-CSRF-Token header, as every POST."""
    log_out(request, ctx)
    return {"ok": True}


@router.get("/me", response_model=schemas.Me, responses=_ERRORS)
def me(request: Request, user: ApiUser) -> schemas.Me:
    return schemas.Me(
        username=user.username, role=user.role, csrf_token=request_session(request).csrf
    )


@router.get(
    "/cases",
    response_model=schemas.CasePage,
    responses={**_ERRORS, 400: {"model": schemas.ErrorOut, "description": "Bad filter."}},
)
def list_cases(
    request: Request,
    db: Db,
    user: ApiUser,
    q: Annotated[
        str | None,
        Query(max_length=128, description="Part of a patient ID or name or accession number."),
    ] = None,
    patient_id: Annotated[str | None, Query(max_length=64)] = None,
    accession_number: Annotated[str | None, Query(max_length=64)] = None,
    study_date_from: Annotated[
        str | None, Query(max_length=10, description="YYYYMMDD or YYYY-MM-DD")
    ] = None,
    study_date_to: Annotated[str | None, Query(max_length=10)] = None,
    state: Annotated[
        str | None, Query(max_length=16, description=f"One of {', '.join(cases.CASE_STATES)}.")
    ] = None,
    source_ae: Annotated[str | None, Query(max_length=64, description="Sending AE title.")] = None,
    model_id: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=cases.MAX_PAGE_SIZE)] = 50,
) -> schemas.CasePage:
    """Cases (one per slide), newest first, filtered and paged."""
    try:
        filters = cases.filters_from_query(
            q, patient_id, accession_number, study_date_from, study_date_to, state,
            source_ae, model_id, page, page_size,
        )  # fmt: skip
    except ValueError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc
    listing = cases.list_cases(db, filters)
    audit_access(request, db, user, case_list_target(listing, "the case list (API)"))
    return listing


@router.get(
    "/cases/{slide_id}",
    response_model=schemas.CaseDetail,
    responses={**_ERRORS, 404: {"model": schemas.ErrorOut, "description": "No such case."}},
)
def get_case(request: Request, db: Db, user: ApiUser, slide_id: Id) -> schemas.CaseDetail:
    """Everything on record for a case: instances, jobs with stage timings, model card,
    SEG UIDs, deliveries with every attempt, the audit events, and who looked at it."""
    detail = cases.case_detail(db, slide_id)
    audit_access(request, db, user, case_target("case.record", "the API record", detail.slide))
    detail.access = access_log(db, slide_id)
    return detail


@router.get(
    "/cases/{slide_id}/overlay.png",
    response_class=Response,
    responses={
        **_ERRORS,
        200: {"content": {"image/png": {}}, "description": "Thumbnail with tumour outline."},
        304: {"description": "Unchanged (If-None-Match)."},
        404: {"model": schemas.ErrorOut, "description": "No such case."},
        422: {"model": schemas.ErrorOut, "description": "Slide or SEG unreadable or purged."},
    },
)
def overlay(request: Request, ctx: Ctx, db: Db, user: ApiUser, slide_id: Id) -> Response:
    """The slide thumbnail with the latest SEG drawn as outline and translucent fill."""
    return overlay_response(request, ctx, db, user, slide_id)


@router.get("/models", response_model=list[schemas.ModelCardOut], responses=_ERRORS)
def models(db: Db, user: ApiUser) -> list[schemas.ModelCardOut]:
    """Every model that has been registered, with its card."""
    return [schemas.ModelCardOut.model_validate(m) for m in cases.list_models(db)]


@router.post("/jobs/{job_id}/rerun", response_model=schemas.ActionOut, responses=_ADMIN_ERRORS)
def rerun_job(ctx: Ctx, user: ApiAdmin, job_id: Id) -> schemas.ActionOut:
    """Queue a new job that supersedes this one (admin; audited)."""
    with ctx.runtime.session() as db:
        job = jobs.rerun_job(session=db, job_id=job_id, actor=user.username)
        new_id = job.id
    dispatched = actions.dispatch(ctx.dispatch_job, new_id, "job")
    return schemas.ActionOut(
        message=f"job {new_id} queued to re-run job {job_id}", job_id=new_id, dispatched=dispatched
    )


@router.post(
    "/deliveries/{delivery_id}/resend", response_model=schemas.ActionOut, responses=_ADMIN_ERRORS
)
def resend_delivery(ctx: Ctx, user: ApiAdmin, delivery_id: Id) -> schemas.ActionOut:
    """Send a delivery again, now (admin; audited)."""
    with ctx.runtime.session() as db:
        deliver.resend_delivery(
            session=db,
            delivery_id=delivery_id,
            actor=user.username,
            settings=ctx.settings.delivery,
            now=utcnow(),
            force=True,  # the admin's button: a delivered result is sent again
        )
    dispatched = actions.dispatch(ctx.dispatch_delivery, delivery_id, "delivery")
    return schemas.ActionOut(
        message=f"delivery {delivery_id} set to be sent again",
        delivery_id=delivery_id,
        dispatched=dispatched,
    )
