"""HTML pages: log-in, the case list, a case, its picture and its viewer; admin forms."""

from __future__ import annotations

import json
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request, Response
from fastapi.responses import RedirectResponse

from unitumour_dicom import deliver, jobs
from unitumour_dicom.db.types import utcnow

from . import actions, cases
from .access_audit import access_log, audit_access, case_list_target, case_target
from .auth_flow import attempt_login, log_out
from .deps import Ctx, Db, Id, PageUser, check_form_csrf, optional_user
from .overlay import overlay_response
from .rendering import render
from .security import (
    VIEWER_CONTENT_SECURITY_POLICY,
    AuthUser,
    safe_next,
)

router = APIRouter(include_in_schema=False)

_MESSAGES = {
    "rerun": "A new job was queued to re-run this case.",
    "resend": "The delivery was set to be sent again.",
}


# -- log-in ------------------------------------------------------------------------------
@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/cases", status_code=303)


@router.get("/login")
def login_form(
    request: Request, ctx: Ctx, next: Annotated[str | None, Query(max_length=2000)] = None
) -> Response:
    if optional_user(request, ctx) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return render(request, ctx, "login.html", None, next=safe_next(next), error=None)


@router.post("/login")
def login(
    request: Request,
    ctx: Ctx,
    username: Annotated[str, Form(max_length=256)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str | None, Form()] = None,
    next: Annotated[str | None, Form(max_length=2000)] = None,
) -> Response:
    check_form_csrf(request, csrf_token)
    user, error = attempt_login(request, ctx, username, password)
    if user is None:
        return render(request, ctx, "login.html", None, 401, next=safe_next(next), error=error)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(
    request: Request, ctx: Ctx, csrf_token: Annotated[str | None, Form()] = None
) -> RedirectResponse:
    check_form_csrf(request, csrf_token)
    log_out(request, ctx)
    return RedirectResponse("/login", status_code=303)


# -- cases -------------------------------------------------------------------------------
@router.get("/cases")
def case_list(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: PageUser,
    q: Annotated[str | None, Query(max_length=128)] = None,
    patient_id: Annotated[str | None, Query(max_length=64)] = None,
    accession_number: Annotated[str | None, Query(max_length=64)] = None,
    study_date_from: Annotated[str | None, Query(max_length=10)] = None,
    study_date_to: Annotated[str | None, Query(max_length=10)] = None,
    state: Annotated[str | None, Query(max_length=16)] = None,
    source_ae: Annotated[str | None, Query(max_length=64)] = None,
    model_id: Annotated[str | None, Query(max_length=12)] = None,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    page_size: Annotated[int, Query(ge=1, le=cases.MAX_PAGE_SIZE)] = 50,
) -> Response:
    values = {
        "q": q or "",
        "patient_id": patient_id or "",
        "accession_number": accession_number or "",
        "study_date_from": study_date_from or "",
        "study_date_to": study_date_to or "",
        "state": state or "",
        "source_ae": source_ae or "",
        "model_id": model_id or "",
    }
    error = None
    try:
        model = int(model_id) if model_id else None
        filters = cases.filters_from_query(
            q, patient_id, accession_number, study_date_from, study_date_to, state,
            source_ae, model, page, page_size,
        )  # fmt: skip
        result = cases.list_cases(db, filters)
    except ValueError as exc:
        error = str(exc)
        result = None
    active = {k: v for k, v in values.items() if v}

    def page_url(n: int) -> str:
        return "/cases?" + urlencode({**active, "page": n, "page_size": page_size})

    n_pages = max(1, -(-result.total // page_size)) if result else 1
    if result is not None:
        audit_access(request, db, user, case_list_target(result, "the case list"))
    return render(
        request,
        ctx,
        "cases.html",
        user,
        400 if error else 200,
        page_data=result,
        values=values,
        error=error,
        states=cases.CASE_STATES,
        source_aes=cases.list_source_aes(db),
        models=cases.list_models(db),
        page=page,
        n_pages=n_pages,
        page_url=page_url,
    )


@router.get("/cases/{slide_id}")
def case_page(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: PageUser,
    slide_id: Id,
    done: Annotated[str | None, Query(max_length=16)] = None,
) -> Response:
    detail = cases.case_detail(db, slide_id)
    audit_access(request, db, user, case_target("case.page", "the page", detail.slide))
    detail.access = access_log(db, slide_id)
    return render(
        request,
        ctx,
        "case.html",
        user,
        case=detail,
        message=_MESSAGES.get(done or ""),
        card_rows=cases.model_card_rows(detail.model.card) if detail.model else [],
        to_json=lambda v: json.dumps(v, indent=2, sort_keys=True, default=str),
    )


@router.get("/cases/{slide_id}/overlay.png")
def case_picture(request: Request, ctx: Ctx, db: Db, user: PageUser, slide_id: Id) -> Response:
    return overlay_response(request, ctx, db, user, slide_id)


@router.get("/cases/{slide_id}/viewer")
def viewer_page(request: Request, ctx: Ctx, db: Db, user: PageUser, slide_id: Id) -> Response:
    slide = cases.load_slide(db, slide_id)
    _job, result = cases.latest_result(slide)
    audit_access(request, db, user, case_target("case.viewer", "the viewer page", slide))
    response = render(
        request,
        ctx,
        "viewer.html",
        user,
        slide=slide,
        result=result,
        viewer_missing=ctx.viewer.missing,
        viewer_root=str(ctx.viewer.root),
    )
    response.headers["Content-Security-Policy"] = VIEWER_CONTENT_SECURITY_POLICY
    return response


# -- admin actions -----------------------------------------------------------------------
def _admin_only(user: AuthUser) -> None:
    if not user.is_admin:
        from fastapi import HTTPException

        raise HTTPException(403, "this needs the admin role")


@router.post("/cases/{slide_id}/jobs/{job_id}/rerun")
def rerun_form(
    request: Request,
    ctx: Ctx,
    user: PageUser,
    slide_id: Id,
    job_id: Id,
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    _admin_only(user)
    check_form_csrf(request, csrf_token)
    with ctx.runtime.session() as db:
        job = jobs.rerun_job(session=db, job_id=job_id, actor=user.username, slide_id=slide_id)
        new_id = job.id
    actions.dispatch(ctx.dispatch_job, new_id, "job")
    return RedirectResponse(f"/cases/{slide_id}?done=rerun#jobs", status_code=303)


@router.post("/cases/{slide_id}/deliveries/{delivery_id}/resend")
def resend_form(
    request: Request,
    ctx: Ctx,
    user: PageUser,
    slide_id: Id,
    delivery_id: Id,
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    _admin_only(user)
    check_form_csrf(request, csrf_token)
    with ctx.runtime.session() as db:
        deliver.resend_delivery(
            session=db,
            delivery_id=delivery_id,
            actor=user.username,
            settings=ctx.settings.delivery,
            now=utcnow(),
            force=True,  # the admin's button: a delivered result is sent again
            slide_id=slide_id,
        )
    actions.dispatch(ctx.dispatch_delivery, delivery_id, "delivery")
    return RedirectResponse(f"/cases/{slide_id}?done=resend#deliveries", status_code=303)
