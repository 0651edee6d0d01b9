"""The read-only DICOMweb endpoint at /dicomweb (QIDO-RS and WADO-RS), behind the login:
the HTTP face of unitumour_dicom.dicomweb, which does the work."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from unitumour_dicom.dicomweb import WebResponse

from . import schemas
from .access_audit import audit_access, dicomweb_target
from .deps import ApiUser, Ctx, Db
from .security import AuthUser

router = APIRouter(prefix="/dicomweb", tags=["dicomweb"])

UIDPath = Annotated[
    str,
    Path(
        min_length=3,
        max_length=64,
        pattern=r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$",
        description="A DICOM UID (PS3.5 9.1).",
    ),
]
Accept = Annotated[str | None, Header(description="Media types, as PS3.18 8.7 negotiates.")]

_JSON = {"application/dicom+json": {"schema": {"type": "array", "items": {"type": "object"}}}}
_MULTIPART: dict[str, dict[str, Any]] = {'multipart/related; type="application/dicom"': {}}
_FRAMES: dict[str, dict[str, Any]] = {'multipart/related; type="application/octet-stream"': {}}
_COMMON = {
    401: {"model": schemas.ErrorOut, "description": "Not logged in."},
    400: {"model": schemas.ErrorOut, "description": "Malformed UID, query or frame list."},
    404: {"model": schemas.ErrorOut, "description": "No such study, series or instance."},
    406: {"model": schemas.ErrorOut, "description": "No acceptable media type."},
}


def _base(request: Request, ctx: Any) -> str:
    """Where the endpoint is mounted, as written into RetrieveURL, BulkDataURI and
    Content-Location: absolute from web.public_url when set, else root-relative (the
    server's configured root path, never the Host header, which the client can forge).
    Browsers (dicom-microscopy-viewer) resolve root-relative URLs against the page."""
    public = ctx.settings.web.public_url
    root = public.rstrip("/") if public else str(request.scope.get("root_path", "")).rstrip("/")
    return f"{root}/dicomweb"


def _answer(
    request: Request,
    db: Session,
    user: AuthUser,
    result: WebResponse,
    view: str,
    label: str,
    *,
    coalesce: bool = False,
    extra: dict[str, Any] | None = None,
) -> Response:
    """Record the access (before a byte is sent), then send ``result``."""
    target = dicomweb_target(view, label, result.seen, coalesce=coalesce, extra=extra)
    audit_access(request, db, user, target)
    return _send(result)


def _query(request: Request) -> dict[str, Any]:
    """A search's parameters for the audit row (kept in the database, never logged)."""
    return {"query": [[k[:64], v[:256]] for k, v in _params(request)[:50]]}


def _send(result: WebResponse) -> Response:
    if isinstance(result.body, bytes):
        return Response(
            result.body, result.status, headers=result.headers, media_type=result.content_type
        )
    return StreamingResponse(
        result.body, result.status, headers=result.headers, media_type=result.content_type
    )


def _qido(summary: str) -> dict[str, Any]:
    return {"summary": summary, "responses": {**_COMMON, 200: {"content": _JSON}}}


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


@router.get("/studies", **_qido("QIDO-RS: search for studies"))
def search_studies(
    request: Request, ctx: Ctx, db: Db, user: ApiUser, accept: Accept = None
) -> Response:
    result = ctx.dicomweb.search_studies(db, _params(request), accept, _base(request, ctx))
    return _answer(
        request, db, user, result, "dicomweb.search", "study search", extra=_query(request)
    )


@router.get("/series", **_qido("QIDO-RS: search for series"))
def search_series(
    request: Request, ctx: Ctx, db: Db, user: ApiUser, accept: Accept = None
) -> Response:
    result = ctx.dicomweb.search_series(db, _params(request), accept, _base(request, ctx))
    return _answer(
        request, db, user, result, "dicomweb.search", "series search", extra=_query(request)
    )


@router.get("/instances", **_qido("QIDO-RS: search for instances"))
def search_instances(
    request: Request, ctx: Ctx, db: Db, user: ApiUser, accept: Accept = None
) -> Response:
    result = ctx.dicomweb.search_instances(db, _params(request), accept, _base(request, ctx))
    return _answer(
        request, db, user, result, "dicomweb.search", "instance search", extra=_query(request)
    )


@router.get("/studies/{study}/series", **_qido("QIDO-RS: search for series of a study"))
def search_study_series(
    request: Request, ctx: Ctx, db: Db, user: ApiUser, study: UIDPath, accept: Accept = None
) -> Response:
    result = ctx.dicomweb.search_series(
        db, _params(request), accept, _base(request, ctx), study_uid=study
    )
    return _answer(
        request, db, user, result, "dicomweb.search", "series search", extra=_query(request)
    )


@router.get("/studies/{study}/instances", **_qido("QIDO-RS: search for instances of a study"))
def search_study_instances(
    request: Request, ctx: Ctx, db: Db, user: ApiUser, study: UIDPath, accept: Accept = None
) -> Response:
    result = ctx.dicomweb.search_instances(
        db, _params(request), accept, _base(request, ctx), study_uid=study
    )
    return _answer(
        request, db, user, result, "dicomweb.search", "instance search", extra=_query(request)
    )


@router.get(
    "/studies/{study}/series/{series}/instances",
    **_qido("QIDO-RS: search for instances of a series"),
)
def search_series_instances(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: ApiUser,
    study: UIDPath,
    series: UIDPath,
    accept: Accept = None,
) -> Response:
    result = ctx.dicomweb.search_instances(
        db, _params(request), accept, _base(request, ctx), study_uid=study, series_uid=series
    )
    return _answer(
        request, db, user, result, "dicomweb.search", "instance search", extra=_query(request)
    )


def _wado(summary: str, content: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "responses": {**_COMMON, 200: {"content": content}}}


@router.get("/studies/{study}", **_wado("WADO-RS: retrieve a study's instances", _MULTIPART))
def retrieve_study(
    request: Request, ctx: Ctx, db: Db, user: ApiUser, study: UIDPath, accept: Accept = None
) -> Response:
    result = ctx.dicomweb.retrieve(db, accept, _base(request, ctx), study_uid=study)
    return _answer(request, db, user, result, "dicomweb.retrieve", "retrieve of a study")


@router.get("/studies/{study}/metadata", **_wado("WADO-RS: metadata of a study", _JSON))
def study_metadata(
    request: Request, ctx: Ctx, db: Db, user: ApiUser, study: UIDPath, accept: Accept = None
) -> Response:
    result = ctx.dicomweb.metadata(db, accept, _base(request, ctx), study_uid=study)
    return _answer(request, db, user, result, "dicomweb.metadata", "metadata of a study")


@router.get("/studies/{study}/series/{series}", **_wado("WADO-RS: retrieve a series", _MULTIPART))
def retrieve_series(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: ApiUser,
    study: UIDPath,
    series: UIDPath,
    accept: Accept = None,
) -> Response:
    result = ctx.dicomweb.retrieve(
        db, accept, _base(request, ctx), study_uid=study, series_uid=series
    )
    return _answer(request, db, user, result, "dicomweb.retrieve", "retrieve of a series")


@router.get(
    "/studies/{study}/series/{series}/metadata", **_wado("WADO-RS: metadata of a series", _JSON)
)
def series_metadata(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: ApiUser,
    study: UIDPath,
    series: UIDPath,
    accept: Accept = None,
) -> Response:
    result = ctx.dicomweb.metadata(
        db, accept, _base(request, ctx), study_uid=study, series_uid=series
    )
    return _answer(request, db, user, result, "dicomweb.metadata", "metadata of a series")


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}",
    **_wado("WADO-RS: retrieve an instance", {**_MULTIPART, "application/dicom": {}}),
)
def retrieve_instance(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: ApiUser,
    study: UIDPath,
    series: UIDPath,
    instance: UIDPath,
    accept: Accept = None,
) -> Response:
    result = ctx.dicomweb.retrieve(
        db, accept, _base(request, ctx), study_uid=study, series_uid=series, sop_uid=instance
    )
    return _answer(request, db, user, result, "dicomweb.retrieve", "retrieve of an instance")


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/metadata",
    **_wado("WADO-RS: metadata of an instance", _JSON),
)
def instance_metadata(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: ApiUser,
    study: UIDPath,
    series: UIDPath,
    instance: UIDPath,
    accept: Accept = None,
) -> Response:
    result = ctx.dicomweb.metadata(
        db, accept, _base(request, ctx), study_uid=study, series_uid=series, sop_uid=instance
    )
    return _answer(request, db, user, result, "dicomweb.metadata", "metadata of an instance")


_FRAMES_ROUTE = _wado("WADO-RS: frames of an instance, as stored or decoded", _FRAMES)
_FRAMES_ROUTE["responses"][413] = {
    "model": schemas.ErrorOut,
    "description": "The frames asked for exceed web.dicomweb_max_frames_mb.",
}


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}", **_FRAMES_ROUTE
)
def instance_frames(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: ApiUser,
    study: UIDPath,
    series: UIDPath,
    instance: UIDPath,
    frames: Annotated[
        str,
        Path(
            max_length=2560,
            pattern=r"^[0-9]+(,[0-9]+)*$",
            description="Frame numbers from 1, comma-separated, each at most once.",
        ),
    ],
    accept: Accept = None,
) -> Response:
    result = ctx.dicomweb.frames(
        db,
        accept,
        _base(request, ctx),
        study_uid=study,
        series_uid=series,
        sop_uid=instance,
        frame_list=frames,
    )
    return _answer(
        request,
        db,
        user,
        result,
        "dicomweb.frames",
        "frames of an instance",
        coalesce=True,
        extra={"frames": frames[:200]},
    )


@router.get(
    "/studies/{study}/series/{series}/instances/{instance}/bulkdata/{tag_path:path}",
    **_wado("WADO-RS: a bulk data element (by tag path)", {"application/octet-stream": {}}),
)
def instance_bulkdata(
    request: Request,
    ctx: Ctx,
    db: Db,
    user: ApiUser,
    study: UIDPath,
    series: UIDPath,
    instance: UIDPath,
    tag_path: Annotated[str, Path(max_length=400, description="TAG[/ITEM/TAG]...")],
    accept: Accept = None,
) -> Response:
    result = ctx.dicomweb.bulkdata(
        db,
        accept,
        _base(request, ctx),
        study_uid=study,
        series_uid=series,
        sop_uid=instance,
        tag_path=tag_path,
    )
    return _answer(
        request,
        db,
        user,
        result,
        "dicomweb.bulkdata",
        "bulk data of an instance",
        coalesce=True,
        extra={"tag_path": tag_path[:100]},
    )
