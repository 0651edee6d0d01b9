"""The audit web app: ``create_app(settings)`` builds it; ``unitumour web`` serves it.

Pages for people (cases, a case, the viewer), a JSON API with its OpenAPI description, a
read-only DICOMweb endpoint for the viewer, health and Prometheus metrics. Everything that
shows patient data needs a logged-in user; admin actions need the admin role and a CSRF token.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import quote

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from prometheus_client import CollectorRegistry
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from unitumour_dicom import __version__
from unitumour_dicom.access import AccessCoalescer, install_access_log_redaction
from unitumour_dicom.config import Settings
from unitumour_dicom.dicomweb import DicomWeb, DicomWebError
from unitumour_dicom.errors import ConflictError, NotFoundError
from unitumour_dicom.runtime import Runtime

from . import api, dicomweb_routes, ops, pages, sessions_admin, stow_routes
from .deps import LoginRequired, WebContext
from .metrics import ServiceCollector
from .pictures import PictureCache, PictureError
from .security import (
    CONTENT_SECURITY_POLICY,
    COOKIE_NAME,
    VIEWER_CONTENT_SECURITY_POLICY,
    SessionCodec,
    load_secret_key,
    request_session,
)
from .validation import validation_error
from .viewer_assets import CLIENT, VIEWER, ViewerAssets

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")

_CACHEABLE_PREFIXES = ("/static/", "/viewer-lib/")
_NO_COOKIE_PREFIXES = ("/static/", "/viewer-lib/", "/healthz", "/readyz", "/metrics")


#: Where `make viewer` installs the viewer in a source checkout (git-ignored).
CHECKOUT_VIEWER_DIR = HERE.parents[1] / "var" / "viewer"


def default_viewer_dir(settings: Settings) -> Path:
    """web.viewer_dir; else viewer/ in the data directory; else a source checkout's
    var/viewer when that is where the viewer is installed (demo and development)."""
    if settings.web.viewer_dir is not None:
        return settings.web.viewer_dir
    in_data_dir = settings.data_dir / "viewer"
    if not ViewerAssets(in_data_dir).available and ViewerAssets(CHECKOUT_VIEWER_DIR).available:
        return CHECKOUT_VIEWER_DIR
    return in_data_dir


def create_app(
    settings: Settings,
    *,
    runtime: Runtime | None = None,
    dispatch_job: Callable[[int], None] | None = None,
    dispatch_delivery: Callable[[int], None] | None = None,
) -> FastAPI:
    """The web app for ``settings``; the hooks hand a re-run job or re-sent delivery (by id)
    to the worker (the Celery side provides them; without them, reconcile picks work up)."""
    runtime = runtime or Runtime(settings)
    templates = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    registry = CollectorRegistry(auto_describe=True)
    collector = ServiceCollector(runtime)
    if settings.web.service_metrics:  # off on all replicas but one: see WebSettings
        registry.register(collector)
    viewer = ViewerAssets(default_viewer_dir(settings))
    ctx = WebContext(
        settings=settings,
        runtime=runtime,
        sessions=SessionCodec(load_secret_key(settings), settings.web.session_hours * 3600),
        templates=templates,
        dicomweb=DicomWeb(
            runtime.store,
            max_frames_bytes=int(settings.web.dicomweb_max_frames_mb * 1024 * 1024),
        ),
        pictures=PictureCache(),
        viewer=viewer,
        metrics=collector,
        dispatch_job=dispatch_job,
        dispatch_delivery=dispatch_delivery,
    )
    app = FastAPI(
        title="UniTumour DICOM",
        version=__version__,
        description=(
            "Audit API of UniTumour DICOM: cases, provenance, overlay pictures, admin actions, "
            "health, metrics, and a read-only DICOMweb endpoint (QIDO-RS, WADO-RS). "
            "Log in with POST /api/login; send the session cookie, and the csrf_token from "
            "GET /api/me as X-CSRF-Token on every POST."
        ),
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.ctx = ctx
    # Access audit: frame and bulk data requests coalesced per user and instance; patient
    # identifiers kept out of the HTTP access log's query strings.
    app.state.access_coalescer = AccessCoalescer(settings.web.access_audit_window_s)
    install_access_log_redaction()
    app.state.metrics_registry = registry
    templates.globals.update(version=__version__, viewer_version=VIEWER.version)

    app.include_router(pages.router)
    app.include_router(api.router)
    app.include_router(dicomweb_routes.router)
    app.include_router(stow_routes.router)
    app.include_router(ops.router)
    app.include_router(sessions_admin.router)
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    # The viewer's files are mounted even when missing, so that installing them (fetch-viewer)
    # needs no restart; the viewer page says what is missing.
    app.mount(
        "/viewer-lib/dmv",
        StaticFiles(directory=viewer.package_dir(VIEWER), check_dir=False),
        name="viewer-lib",
    )
    app.mount(
        "/viewer-lib/dwc",
        StaticFiles(directory=viewer.package_dir(CLIENT), check_dir=False),
        name="viewer-client",
    )

    @app.middleware("http")
    async def sessions_and_headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request.state.web_session = ctx.sessions.loads(request.cookies.get(COOKIE_NAME))
        request.state.session_changed = False
        response = await call_next(request)
        path = request.url.path
        if request.state.session_changed and not path.startswith(_NO_COOKIE_PREFIXES):
            session = request.state.web_session
            response.set_cookie(
                COOKIE_NAME,
                ctx.sessions.dumps(session),
                max_age=int(settings.web.session_hours * 3600),
                path="/",
                secure=settings.web.secure_cookies,
                httponly=True,
                samesite="lax",
            )
        headers = response.headers
        if request.url.scheme == "https" and settings.web.hsts_seconds > 0:
            headers.setdefault("Strict-Transport-Security", f"max-age={settings.web.hsts_seconds}")
        if path.startswith("/viewer-lib/"):
            headers.setdefault("Content-Security-Policy", VIEWER_CONTENT_SECURITY_POLICY)
        headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        if path.startswith(_CACHEABLE_PREFIXES):
            headers.setdefault("Cache-Control", "public, max-age=3600")
        else:
            # Patient data must not linger in shared browser caches on ward workstations.
            headers.setdefault("Cache-Control", "no-store")
        return response

    if settings.web.trusted_proxies:
        # Outermost, so that the client address and https are the proxy's word for every
        # layer below (sessions on record, HSTS); `unitumour web` leaves this to the app.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.web.trusted_proxies)
    app.add_exception_handler(RequestValidationError, validation_error)

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return RedirectResponse(f"/login?next={quote(target, safe='/')}", status_code=303)

    @app.exception_handler(DicomWebError)
    async def _dicomweb_error(request: Request, exc: DicomWebError) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> Response:
        return _error(request, 404, str(exc))

    @app.exception_handler(ConflictError)
    async def _conflict(request: Request, exc: ConflictError) -> Response:
        return _error(request, 409, str(exc))

    @app.exception_handler(PictureError)
    async def _picture(request: Request, exc: PictureError) -> Response:
        log.warning("picture failed for %s: %s", request.url.path, exc)
        return _error(request, 422, str(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> Response:
        return _error(request, exc.status_code, str(exc.detail), exc.headers)

    def _error(
        request: Request, code: int, detail: str, headers: Mapping[str, str] | None = None
    ) -> Response:
        wants_html = "text/html" in request.headers.get("accept", "") and not (
            request.url.path.startswith(("/api/", "/dicomweb"))
        )
        if wants_html:
            # The page extends base.html like every page: it needs the path (navigation)
            # and, for a logged-in user, the CSRF token of the log-out form.
            user = getattr(request.state, "auth_user", None)
            html = templates.get_template("error.html").render(
                status_code=code,
                detail=detail,
                user=user or None,
                path=request.url.path,
                csrf_token=request_session(request).csrf,
            )
            return Response(html, code, media_type="text/html", headers=headers)
        return JSONResponse({"detail": detail}, status_code=code, headers=headers)

    return app
