"""Health and metrics for IT: /healthz (alive), /readyz (database, broker, store; or only those
named by ``?check=``), /metrics."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import schemas
from .deps import Ctx
from .health import CHECKS, readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=dict[str, str])
def healthz() -> dict[str, str]:
    """The process is up and answering (no dependency is checked)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=schemas.ReadyOut,
    responses={503: {"model": schemas.ReadyOut, "description": "A dependency is down."}},
)
def readyz(
    ctx: Ctx,
    check: Annotated[
        list[str] | None,
        Query(description=f"Only these checks ({', '.join(CHECKS)}); repeatable. Default: all."),
    ] = None,
) -> Response:
    """Whether the database answers, the broker accepts a connection, and the store is
    writable above its free-space watermark; 503 when any is not. ``?check=database``: the
    database only (the readiness probe of a web replica: its pages need nothing else)."""
    only = tuple(dict.fromkeys(check)) if check else CHECKS
    if set(only) - set(CHECKS):
        raise HTTPException(422, f"check must be among {', '.join(CHECKS)}")
    checks = readiness(ctx.runtime, ctx.settings.web.readiness_timeout_s, only)
    body = schemas.ReadyOut(
        ready=all(c.ok for c in checks.values()),
        checks={
            name: schemas.CheckOut(ok=c.ok, detail=c.detail, seconds=c.seconds)
            for name, c in checks.items()
        },
    )
    return JSONResponse(body.model_dump(), status_code=200 if body.ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text."}},
)
def metrics(request: Request) -> Response:
    """Instances and bytes received, jobs by state, stage durations, deliveries and their
    failures, associations, store space: Prometheus text format. No patient data."""
    return Response(
        generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST
    )
