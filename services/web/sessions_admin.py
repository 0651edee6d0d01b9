"""Admins list and end web sessions: a JSON API and a page (/admin/sessions).

Ending is unitumour_dicom.login_sessions' (one session: ``user.session_ended``; every session
of a user: ``user.sessions_ended``), the same functions that ``unitumour users end-sessions``
calls; every end is audited with the admin as actor.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from unitumour_dicom import users
from unitumour_dicom.db import LoginSession
from unitumour_dicom.login_sessions import EndReason, end_session, list_sessions

from .deps import ApiAdmin, ApiAdminRead, Ctx, Id, PageUser, WebContext, check_form_csrf
from .rendering import render
from .security import AuthUser

router = APIRouter(tags=["sessions"])

Username = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._@-]*$")
]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Not logged in."},
    403: {"description": "Not an admin, or no CSRF token."},
    404: {"description": "No such open session, or no such user."},
}


class SessionOut(BaseModel):
    """An open session (the token itself is never shown: the database does not have it)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    role: str
    created_at: datetime
    last_seen_at: datetime = Field(description="Updated at most once a minute.")
    expires_at: datetime
    remote_addr: str | None
    user_agent: str | None
    current: bool = Field(description="The session this request came with.")


class EndedOut(BaseModel):
    ended: int = Field(description="How many sessions ended.")


def _out(row: LoginSession, me: AuthUser) -> SessionOut:
    return SessionOut(
        id=row.id,
        username=row.user.username,
        role=row.user.role,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
        remote_addr=row.remote_addr,
        user_agent=row.user_agent,
        current=row.id == me.session_id,
    )


def _sessions(ctx: WebContext, me: AuthUser, username: str | None) -> list[SessionOut]:
    with ctx.runtime.session() as db:
        return [_out(row, me) for row in list_sessions(session=db, username=username)]


def _end_one(ctx: WebContext, me: AuthUser, session_id: int) -> None:
    with ctx.runtime.session() as db:
        row = end_session(
            session=db, session_id=session_id, reason=EndReason.ADMIN, actor=me.username
        )
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no open session {session_id}")


def _end_all(ctx: WebContext, me: AuthUser, username: str) -> int:
    try:
        with ctx.runtime.session() as db:
            return users.end_sessions(session=db, username=username, actor=me.username)
    except users.UserError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


# -- API ---------------------------------------------------------------------------------
@router.get("/api/sessions", response_model=list[SessionOut], responses=_ERRORS)
def api_list(
    ctx: Ctx,
    user: ApiAdminRead,
    username: Annotated[str | None, Query(max_length=64, description="Only this user's.")] = None,
) -> list[SessionOut]:
    """Open web sessions, newest first (admin)."""
    return _sessions(ctx, user, username)


@router.post("/api/sessions/{session_id}/end", response_model=EndedOut, responses=_ERRORS)
def api_end_one(ctx: Ctx, user: ApiAdmin, session_id: Id) -> EndedOut:
    """End one session at once: its cookie stops working everywhere (admin; audited)."""
    _end_one(ctx, user, session_id)
    return EndedOut(ended=1)


@router.post("/api/users/{username}/sessions/end", response_model=EndedOut, responses=_ERRORS)
def api_end_all(ctx: Ctx, user: ApiAdmin, username: Username) -> EndedOut:
    """End every open session of a user (admin; audited)."""
    return EndedOut(ended=_end_all(ctx, user, username))


# -- page --------------------------------------------------------------------------------
def _admin_page_user(user: AuthUser) -> AuthUser:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin role")
    return user


@router.get("/admin/sessions", include_in_schema=False)
def sessions_page(
    request: Request,
    ctx: Ctx,
    user: PageUser,
    username: Annotated[str | None, Query(max_length=64)] = None,
    ended: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
) -> Response:
    _admin_page_user(user)
    return render(
        request,
        ctx,
        "sessions.html",
        user,
        sessions=_sessions(ctx, user, username or None),
        username=username or "",
        ended=ended,
    )


@router.post("/admin/sessions/{session_id}/end", include_in_schema=False)
def end_one_form(
    request: Request,
    ctx: Ctx,
    user: PageUser,
    session_id: Id,
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    _admin_page_user(user)
    check_form_csrf(request, csrf_token)
    _end_one(ctx, user, session_id)
    return RedirectResponse("/admin/sessions?ended=1", status_code=303)


@router.post("/admin/users/{username}/sessions/end", include_in_schema=False)
def end_all_form(
    request: Request,
    ctx: Ctx,
    user: PageUser,
    username: Username,
    csrf_token: Annotated[str | None, Form()] = None,
) -> RedirectResponse:
    _admin_page_user(user)
    check_form_csrf(request, csrf_token)
    count = _end_all(ctx, user, username)
    return RedirectResponse(f"/admin/sessions?ended={count}", status_code=303)
