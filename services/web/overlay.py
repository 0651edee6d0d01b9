"""The case picture as an HTTP answer (the page's and the API's): drawn by :mod:`.pictures`,
cached by its ETag in the browser, every look at it on record (a 304 included)."""

from __future__ import annotations

from fastapi import Request, Response
from sqlalchemy.orm import Session

from unitumour_dicom.db import Slide

from .access_audit import audit_access, case_target
from .deps import WebContext
from .pictures import case_overlay_png
from .security import AuthUser

__all__ = ["overlay_response"]


def overlay_response(
    request: Request, ctx: WebContext, db: Session, user: AuthUser, slide_id: int
) -> Response:
    """The case picture (page and API), its access recorded (a 304 included: the browser
    shows its copy)."""
    png, etag = case_overlay_png(
        session=db,
        store=ctx.runtime.store,
        slide_id=slide_id,
        cache=ctx.pictures,
        max_pixels=ctx.settings.web.thumbnail_pixels,
    )
    slide = db.get(Slide, slide_id)
    if slide is not None:
        audit_access(request, db, user, case_target("case.picture", "the picture", slide))
    quoted = f'"{etag}"'
    headers = {"ETag": quoted, "Cache-Control": "private, no-cache"}
    if request.headers.get("if-none-match") == quoted:
        return Response(status_code=304, headers=headers)
    return Response(png, media_type="image/png", headers=headers)
