"""What every request handler gets: the app's context, a database session, the logged-in
user (or a refusal: 401 for the API, a redirect to the log-in page for pages), and the CSRF
check for state-changing calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Path, Request, status
from fastapi.security import APIKeyCookie
from jinja2 import Environment
from sqlalchemy.orm import Session

from unitumour_dicom.config import Settings
from unitumour_dicom.dicomweb import DicomWeb
from unitumour_dicom.login_sessions import find_session
from unitumour_dicom.runtime import Runtime

from .metrics import ServiceCollector
from .pictures import PictureCache
from .security import (
    COOKIE_NAME,
    CSRF_HEADER,
    AuthUser,
    SessionCodec,
    csrf_ok,
    request_session,
)
from .viewer_assets import ViewerAssets


@dataclass
class WebContext:
    """Everything the app builds once from its settings."""

    settings: Settings
    runtime: Runtime
    sessions: SessionCodec
    templates: Environment
    dicomweb: DicomWeb
    pictures: PictureCache
    viewer: ViewerAssets
    metrics: ServiceCollector
    dispatch_job: Callable[[int], None] | None
    dispatch_delivery: Callable[[int], None] | None


class LoginRequired(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """A page needs a logged-in user: answered with a redirect to the log-in page."""


def get_ctx(request: Request) -> WebContext:
    ctx: WebContext = request.app.state.ctx
    return ctx


Ctx = Annotated[WebContext, Depends(get_ctx)]


def get_db(ctx: Ctx) -> Iterator[Session]:
    with ctx.runtime.session() as session:
        yield session


Db = Annotated[Session, Depends(get_db)]

#: Documents the session cookie as the API's security scheme in the OpenAPI description.
cookie_scheme = APIKeyCookie(name=COOKIE_NAME, auto_error=False, description="Session cookie.")


def optional_user(request: Request, ctx: Ctx) -> AuthUser | None:
    """The user of the request's server-side session, if that session is still open (not
    ended, not expired, its user active): the database decides, not the cookie."""
    if hasattr(request.state, "auth_user"):  # looked up once per request
        cached: AuthUser | None = request.state.auth_user
        return cached
    user = None
    if request.cookies.get(COOKIE_NAME):
        session = request_session(request)
        if session.token is not None:
            with ctx.runtime.session() as db:
                row = find_session(session=db, token=session.token)
                if row is not None:
                    user = AuthUser(
                        id=row.user.id,
                        username=row.user.username,
                        role=row.user.role,
                        session_id=row.id,
                    )
    request.state.auth_user = user
    return user


def api_user(
    user: Annotated[AuthUser | None, Depends(optional_user)],
    _cookie: Annotated[str | None, Depends(cookie_scheme)] = None,
) -> AuthUser:
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "log in first")
    return user


def _check_csrf(request: Request, token: str | None) -> None:
    if not csrf_ok(request_session(request), token):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token")


CsrfHeader = Annotated[
    str | None,
    Header(
        alias=CSRF_HEADER,
        description="The csrf_token from GET /api/me (required on every POST).",
    ),
]


def api_user_csrf(
    request: Request, user: Annotated[AuthUser, Depends(api_user)], x_csrf_token: CsrfHeader = None
) -> AuthUser:
    """A logged-in user's state-changing call (log-out): the CSRF token is required."""
    _check_csrf(request, x_csrf_token)
    return user


def api_admin_read(user: Annotated[AuthUser, Depends(api_user)]) -> AuthUser:
    """An admin reading what only admins may see (no state changes: no CSRF token)."""
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin role")
    return user


def api_admin(
    request: Request, user: Annotated[AuthUser, Depends(api_user)], x_csrf_token: CsrfHeader = None
) -> AuthUser:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "this needs the admin role")
    _check_csrf(request, x_csrf_token)
    return user


def page_user(user: Annotated[AuthUser | None, Depends(optional_user)]) -> AuthUser:
    if user is None:
        raise LoginRequired()
    return user


def check_form_csrf(request: Request, token: str | None) -> None:
    _check_csrf(request, token)


ApiUser = Annotated[AuthUser, Depends(api_user)]
ApiUserCsrf = Annotated[AuthUser, Depends(api_user_csrf)]
ApiAdmin = Annotated[AuthUser, Depends(api_admin)]
ApiAdminRead = Annotated[AuthUser, Depends(api_admin_read)]
PageUser = Annotated[AuthUser, Depends(page_user)]

#: Database ids in paths: positive and within a 32-bit INTEGER column.
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]
