"""Logging in and out of the web app, for the log-in page and the JSON API alike.

The lock-out, the password check and the server-side session are the library's
(:func:`unitumour_dicom.logins.log_in`, :func:`unitumour_dicom.login_sessions.end_session`);
this puts their outcome into the request's session cookie.
"""

from __future__ import annotations

from fastapi import Request

from unitumour_dicom.login_sessions import EndReason, end_session
from unitumour_dicom.logins import log_in

from .deps import WebContext, optional_user
from .security import AuthUser, WebSession, logged_in_session, replace_session

__all__ = ["attempt_login", "log_out"]


def attempt_login(
    request: Request, ctx: WebContext, username: str, password: str
) -> tuple[AuthUser | None, str | None]:
    """(user, None) on success, else (None, why), with a new session and cookie on success.

    The lock-out, the password check and the session are unitumour_dicom.logins.log_in's.
    """
    outcome = log_in(
        ctx.runtime,
        username=username,
        password=password,
        remote_addr=request.client.host if request.client else None,
        user_agent=request.headers.get("user-agent"),
    )
    if outcome.locked:
        return None, (
            f"Too many failed log-ins for this user; try again in "
            f"{ctx.settings.web.lockout_minutes:g} minutes."
        )
    if outcome.user is None or outcome.token is None:
        return None, "Wrong user name or password, or the user is disabled."
    replace_session(request, logged_in_session(outcome.token))
    user = outcome.user
    auth = AuthUser(
        id=user.id, username=user.username, role=user.role, session_id=outcome.session_id
    )
    request.state.auth_user = auth
    return auth, None


def log_out(request: Request, ctx: WebContext) -> None:
    """End the request's server-side session (every copy of its cookie stops working) and
    send an anonymous cookie in its place."""
    user = optional_user(request, ctx)
    if user is not None and user.session_id is not None:
        with ctx.runtime.session() as db:
            end_session(
                session=db, session_id=user.session_id, reason=EndReason.LOGOUT,
                actor=user.username,
            )  # fmt: skip
    replace_session(request, WebSession())
    request.state.auth_user = None
