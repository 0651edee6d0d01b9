"""``unitumour web``: serve the audit web app; ``unitumour web fetch-viewer``: install the
viewer's browser files (npm) where the app serves them from."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from unitumour_dicom.cli.common import apply_logging_settings, fail, run_guarded, state
from unitumour_dicom.permissions import private_dir

from .viewer_assets import VIEWER, ViewerAssetsError, fetch_viewer

log = logging.getLogger(__name__)

#: How every process serves the app with uvicorn (``unitumour web``, ``serve``, the tests' live
#: server). proxy_headers off: uvicorn would believe X-Forwarded-* from 127.0.0.1 (or
#: FORWARDED_ALLOW_IPS) whatever the settings say; the app applies web.trusted_proxies itself.
UVICORN_OPTIONS: dict[str, object] = {
    "server_header": False,
    "proxy_headers": False,
    "timeout_graceful_shutdown": 30,
}

web_app = typer.Typer(
    help="The audit web app: cases, pictures, viewer, API, DICOMweb, health, metrics.",
    invoke_without_command=True,
)


@web_app.callback()
def web(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Listen address (default: web.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: web.port).")] = None,
) -> None:
    """Serve the web app (until Ctrl-C / SIGTERM)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from unitumour_dicom.config import masked_settings
    from unitumour_dicom.db import migrate

    from .app import create_app, default_viewer_dir

    settings = run_guarded(state.settings)
    apply_logging_settings(settings)
    web_settings = settings.web
    url = settings.database_url
    if url.startswith("sqlite:///"):
        private_dir(settings.data_dir)
    if not migrate.is_current(url):
        fail(
            f"the database is at revision {migrate.current_revision(url) or 'base'}, not "
            f"{migrate.head_revision(url)}: run 'unitumour db upgrade' first"
        )
    log.info("web settings: %s", masked_settings(settings)["web"])
    from ..worker import make_job_dispatcher

    # Re-runs and re-sends go to the workers' queues at once (the worker's reconcile would
    # find them too, later).
    dispatcher = make_job_dispatcher(settings)
    app = create_app(
        settings,
        dispatch_job=dispatcher.dispatch_job,
        dispatch_delivery=dispatcher.dispatch_delivery,
    )
    viewer = app.state.ctx.viewer
    if viewer.missing:
        log.warning(
            "dicom-microscopy-viewer is not installed at %s (run 'unitumour web fetch-viewer'); "
            "the viewer page will say so",
            default_viewer_dir(settings),
        )
    uvicorn.run(
        app,
        host=host or web_settings.host,
        port=web_settings.port if port is None else port,
        log_config=None,
        **UVICORN_OPTIONS,  # type: ignore[arg-type]
    )


@web_app.command("fetch-viewer")
def fetch_viewer_command(
    dest: Annotated[
        Path | None,
        typer.Argument(help="Install folder (default: web.viewer_dir, else DATA_DIR/viewer)."),
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if installed.")] = False,
) -> None:
    """Fetch dicom-microscopy-viewer (pinned version and digest) with npm."""
    from .app import default_viewer_dir

    target = dest or default_viewer_dir(run_guarded(state.settings))
    try:
        assets = fetch_viewer(target, force=force)
    except ViewerAssetsError as exc:
        fail(str(exc))
    typer.echo(f"dicom-microscopy-viewer {VIEWER.version} ready at {assets.root}")
