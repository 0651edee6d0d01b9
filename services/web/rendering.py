"""Rendering a page: one template with what every page needs (the user, the CSRF token for its
forms, the path for the navigation). The pages and the admin pages both render through it."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from .deps import WebContext
from .security import AuthUser, request_session

__all__ = ["render"]


def render(
    request: Request,
    ctx: WebContext,
    name: str,
    user: AuthUser | None,
    status_code: int = 200,
    **values: Any,
) -> HTMLResponse:
    session = request_session(request)
    html = ctx.templates.get_template(name).render(
        user=user, csrf_token=session.csrf, path=request.url.path, **values
    )
    return HTMLResponse(html, status_code)
